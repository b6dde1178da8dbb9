"""`reproduce` on a machine lent for minutes: every call sends back what it has, the next
continues, and the notebooks wait for the Inception weights instead of failing halfway."""
import io
import shutil
import tarfile

import pytest

from labkit import LabkitError
from labkit.__main__ import main
from labkit.metrics import evaluate
from labkit.models import MODELS
from labkit.reproduce import pack, report_from, reproduce
from labkit.runs import Run

from conftest import TINY, tiny_extractor

SETTINGS = dict(epochs=2, batch=16, limit=64, log_every=2, ckpt_every=3, **TINY)  # 8 steps a model


def packed(out):
    parts = sorted(out.glob("results.tar.gz.part*"))
    with tarfile.open(fileobj=io.BytesIO(b"".join(p.read_bytes() for p in parts)), mode="r:gz") as tar:
        return set(tar.getnames())


def test_a_cut_call_sends_back_its_progress_and_the_next_one_continues(celeba_like, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_INCEPTION", str(tmp_path / "not-brought-yet.pth"))
    out, work = tmp_path / "out", tmp_path / "work"
    call = dict(data=celeba_like.parent, work=work, profile="smoke", settings=SETTINGS)

    # A time limit that ends the first run at its first logged step and leaves none for the others.
    assert reproduce(out, time_limit=1e-3, **call) is False
    first = Run(work / "build" / "runs" / "vae").stats()
    assert first[-1]["step"] < 8
    assert packed(out) == {"runs/vae/options.json", "runs/vae/stats.jsonl", "runs/vae/log.txt"}
    with pytest.raises(LabkitError, match="progress of a reproduction, not its results"):
        report_from(out, tmp_path / "home")

    # Time enough: all three trained, the first from where it stopped; no notebook without the weights.
    assert reproduce(out, time_limit=600, **call) is False
    vae = Run(work / "build" / "runs" / "vae").stats()
    assert vae[:len(first)] == first and vae[-1]["step"] == 8
    assert all(Run(work / "build" / "runs" / m).stats()[-1]["step"] == 8 for m in MODELS)
    assert not list((work / "build").glob("*.ipynb"))
    names = packed(out)
    for model in MODELS:
        assert {f"runs/{model}/{f}" for f in ("options.json", "stats.jsonl", "log.txt")} <= names
        assert f"runs/{model}/grids/epoch-0002.png" in names  # the last grid: what the run draws now
    assert "report.json" not in names


def test_the_command_line_passes_epochs_and_the_fast_path_to_every_run(celeba_like, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_INCEPTION", str(tmp_path / "not-brought-yet.pth"))
    args = ["reproduce", "--out", str(tmp_path / "out"), "--data", str(celeba_like.parent), "--work", str(tmp_path),
            "--profile", "smoke", "--epochs", "1", "--no-fast"]
    assert main(args) == 3  # trained, waiting for the weights
    for model in MODELS:
        o = Run(tmp_path / "build" / "runs" / model).options()
        assert (o["epochs"], o["fast"], o["width"]) == (1, False, 0.125)


def test_the_results_carry_the_reconstructions_the_evaluation_kept_not_the_checkpoint(two_runs, tmp_path):
    build = tmp_path / "build"
    shutil.copytree(two_runs / "vae", build / "runs" / "vae")
    evaluate([build / "runs" / "vae"], n=16, n_ref=16, extractor=tiny_extractor(), sets=("prior", "recon"))
    pack(build, tmp_path / "out")
    names = packed(tmp_path / "out")
    assert "runs/vae/reconstructions.npz" in names and "runs/vae/checkpoint.pt" not in names
