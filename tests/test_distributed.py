import json
import os
import subprocess
import sys

import pytest

from labkit.runs import Run

ARGS = ["--model", "vaegan", "--profile", "smoke", "--epochs", "1", "--batch", "16", "--limit", "128",
        "--log-every", "1", "--width", "0.0625", "--latent", "16", "--optimizer", "adam"]


def train(run, nproc):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    out = subprocess.run([*launcher, "-m", "labkit", "train", "--run-dir", str(run), *ARGS],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return [r for r in Run(run).stats() if "kimg" in r]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    one, two = train(tmp_path / "one", 1), train(tmp_path / "two", 2)
    assert [r["step"] for r in one] == [r["step"] for r in two] == list(range(1, 9))
    # Same data, same noise (each rank keeps its slice of the global draw), averaged gradients:
    # the first step differs only by BatchNorm statistics over 8 instead of 16 images.
    for key in ("loss/kl", "loss/llike", "loss/d", "loss/g"):
        for a, b in zip(one, two):
            assert b[key] == pytest.approx(a[key], rel=0.15, abs=2e-3), (key, a["step"])
    assert {p.name for p in (tmp_path / "two").iterdir()} >= {"checkpoint.pt", "options.json", "grids"}
    assert json.loads((tmp_path / "two" / "options.json").read_text())["processes"] == 2
