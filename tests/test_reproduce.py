"""`reproduce` as an offline GPU job: every call sends back what it has within the return limits,
whatever stopped it; the next continues; the job's time fixes the epochs once; the notebooks wait for the
Inception weights and for the time they need."""
import json
import shutil
import tarfile

import numpy as np
import pytest
import torch

from labkit import LabkitError, pack as P, reproduce as R
from labkit.__main__ import main
from labkit.metrics import evaluate
from labkit.models import MODELS
from labkit.runs import Run

from conftest import TINY, tiny_extractor

SETTINGS = dict(epochs=2, batch=16, limit=64, log_every=2, ckpt_every=3, **TINY)  # 8 steps a model


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    """The job's margins, sized for minutes-long GPU steps, made to fit steps of milliseconds."""
    for name, value in (("START_SECONDS", 0), ("END_SECONDS", 0), ("NOTEBOOK_SECONDS", 0), ("PROBE_SECONDS", 0.2)):
        monkeypatch.setattr(R, name, value)


def packed(out):
    """Every file in the parts under out (each part a tar of its own)."""
    names = set()
    for part in out.glob(P.PART.format("*")):
        with tarfile.open(part) as tar:
            names |= set(tar.getnames())
    return names


def test_a_cut_call_sends_back_its_progress_and_the_next_one_continues(celeba_like, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_INCEPTION", str(tmp_path / "not-brought-yet.pth"))
    out, work = tmp_path / "out", tmp_path / "work"
    call = dict(data=celeba_like.parent, work=work, profile="smoke", settings=SETTINGS)

    # No time: every run starts (the margins let it, here) and stops at its first logged step.
    monkeypatch.setattr(R, "START_SECONDS", -1e9)
    assert R.reproduce(out, time_limit=1e-3, **call) is False
    monkeypatch.setattr(R, "START_SECONDS", 0)
    first = Run(work / "build" / "runs" / "vae").stats()
    assert first[-1]["step"] < 8
    assert packed(out) == {f"runs/{m}/{f}" for m in MODELS for f in ("options.json", "stats.jsonl", "log.txt")}
    with pytest.raises(LabkitError, match="progress of a reproduction, not its results"):
        R.report_from(out, tmp_path / "home")

    # Time enough: every model trained, the first from where it stopped; no notebook without the weights.
    assert R.reproduce(out, time_limit=600, **call) is False
    vae = Run(work / "build" / "runs" / "vae").stats()
    assert vae[:len(first)] == first and vae[-1]["step"] == 8
    assert all(Run(work / "build" / "runs" / m).stats()[-1]["step"] == 8 for m in MODELS)
    assert not list((work / "build").glob("*.ipynb"))
    names = packed(out)
    for model in MODELS:
        assert {f"runs/{model}/{f}" for f in ("options.json", "stats.jsonl", "log.txt")} <= names
        assert f"runs/{model}/grids/epoch-0002.png" in names  # the last grid: what the run draws now
    assert "report.json" not in names
    assert Run(work / "build" / "runs" / "vae").options()["on_nan"] == "rollback"  # the job's default


def test_a_call_that_fails_still_sends_back_what_it_has(celeba_like, tmp_path, monkeypatch):
    real = R.training_loop

    def diverges_on_the_second_model(run, **kw):
        if kw["model"] != "vae":
            raise RuntimeError("CUDA out of memory")
        return real(run, **kw)
    monkeypatch.setattr(R, "training_loop", diverges_on_the_second_model)
    with pytest.raises(RuntimeError, match="out of memory"):
        R.reproduce(tmp_path / "out", data=celeba_like.parent, work=tmp_path / "work", profile="smoke",
                    settings=SETTINGS)
    assert "runs/vae/stats.jsonl" in packed(tmp_path / "out")


def test_the_job_time_fixes_the_epochs_once_from_the_measured_step_rates(celeba_like, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_INCEPTION", str(tmp_path / "not-brought-yet.pth"))
    work = tmp_path / "work"
    call = dict(data=celeba_like.parent, work=work, profile="smoke", settings=dict(SETTINGS, epochs=400),
                job_seconds=8.0)
    R.reproduce(tmp_path / "out", time_limit=600, **call)
    plan = json.loads((work / "plan.json").read_text())
    assert 1 <= plan["epochs"] < 400 and set(plan["steps_per_second"]) == set(MODELS)
    assert plan["eval_n"] == 1000 or plan["eval_n"] <= 64  # halved to fit, not below the minimum
    R.reproduce(tmp_path / "out", time_limit=600, **dict(call, job_seconds=1e6))  # a later call keeps the plan
    assert json.loads((work / "plan.json").read_text()) == plan
    for model in MODELS:
        assert Run(work / "build" / "runs" / model).options()["epochs"] == plan["epochs"]


def test_the_command_line_passes_epochs_and_bf16_without_compiling_to_every_run(celeba_like, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_INCEPTION", str(tmp_path / "not-brought-yet.pth"))
    args = ["reproduce", "--out", str(tmp_path / "out"), "--data", str(celeba_like.parent), "--work", str(tmp_path),
            "--profile", "smoke", "--epochs", "1", "--fast", "--no-compile", "--return-files", "4"]
    assert main(args) == 3  # trained, waiting for the weights
    for model in MODELS:
        o = Run(tmp_path / "build" / "runs" / model).options()
        assert (o["epochs"], o["fast"], o["compile"], o["width"]) == (1, True, False, 0.125)
    assert json.loads((tmp_path / "out" / P.MANIFEST).read_text())["limits"] == {"files": 4, "mib": 60}


def full_size_build(root, faces=2000):
    """A build folder the size a full-profile job makes: the record, figures, notebooks, grids, and
    2,000 reconstructions per model of incompressible noise (a worst case for the compressor)."""
    g = np.random.default_rng(0)
    (root / "figures").mkdir(parents=True)
    (root / "report.json").write_text(json.dumps({"facts": {"profile": "full"}, "sizes": {}, "settings": {}}))
    (root / "figures" / "metrics.json").write_text("{}")
    for name in ("samples", "reconstructions", "interpolation", "loss_curves"):
        (root / "figures" / f"{name}.png").write_bytes(g.bytes(800_000))
    for name in ("00_introduction", "03_results", "04_discussion", "05_demo", "02_train_vae"):
        (root / f"{name}.ipynb").write_bytes(g.bytes(2_500_000))
    held = torch.from_numpy(g.integers(0, 256, (faces, 3, 64, 64), dtype=np.uint8))
    for model in ("vae", "vaedisl", "vaegan", "gan"):
        run = root / "runs" / model
        (run / "grids").mkdir(parents=True)
        for f in ("options.json", "stats.jsonl", "log.txt"):
            (run / f).write_text("{}")
        for epoch in range(1, 101):
            (run / "grids" / f"epoch-{epoch:04d}.png").write_bytes(g.bytes(300_000))
        if model != "gan":
            recon = torch.from_numpy(g.integers(0, 256, (faces, 3, 64, 64), dtype=np.uint8))
            Run(run).keep_reconstructions(recon, held)
    return held


def test_full_size_results_fit_the_return_limits_and_each_part_stands_alone(tmp_path):
    build, out = tmp_path / "build", tmp_path / "out"
    held = full_size_build(build)
    out.mkdir()
    (out / "checks.txt").write_bytes(b"x" * 1000)  # what else the job leaves there counts too
    manifest = P.pack(build, out, files=8, mib=60)
    sent = [p for p in out.iterdir()]
    assert len(sent) <= 8 and sum(p.stat().st_size for p in sent) <= 60 * 2**20
    assert manifest["parts"][P.PART.format(0)]["tier"] == "record"  # the most important first
    names = packed(out)
    assert {"report.json", "figures/metrics.json", "figures/samples.png", "03_results.ipynb"} <= names
    assert "02_train_vae.ipynb" not in names  # the workbook's: the report is assembled without it
    assert "runs/vaegan/grids/epoch-0100.png" in names and "runs/vaegan/grids/epoch-0003.png" not in names
    # 3 x 24 MiB of noise: every run's reconstructions cut to the same first faces, as many as fit.
    cuts = {manifest["cut"][f"runs/{m}/reconstructions.npz"] for m in ("vae", "vaedisl", "vaegan")}
    assert len(cuts) == 1
    keep = int(cuts.pop().split()[2])
    assert 100 <= keep < 2000
    # A part that does not arrive takes only its own files; the rest unpack and the cut files are usable.
    grids = next(n for n, p in manifest["parts"].items() if p["tier"] == "grids")
    (out / grids).unlink()
    home = tmp_path / "home"
    assert P.unpack(out, home) == manifest["parts"][grids]["files"]
    assert (home / "report.json").is_file() and not (home / "runs/vae/grids").exists()
    kept = Run(home / "runs" / "vaedisl").kept_reconstructions(held[:keep])
    assert kept is not None and len(kept) == keep


def test_too_few_files_merge_the_least_important_parts(tmp_path):
    build = tmp_path / "build"
    full_size_build(build, faces=200)
    manifest = P.pack(build, tmp_path / "out", files=3, mib=60)
    assert len(manifest["parts"]) == 2 and list(manifest["parts"].values())[-1]["tier"] != "figures"
    assert not manifest["left_out"]


def test_the_results_hold_the_reconstructions_the_evaluation_kept_not_the_checkpoint(two_runs, tmp_path):
    build = tmp_path / "build"
    shutil.copytree(two_runs / "vae", build / "runs" / "vae")
    evaluate([build / "runs" / "vae"], n=16, n_ref=16, extractor=tiny_extractor(), sets=("prior", "recon"))
    P.pack(build, tmp_path / "out")
    names = packed(tmp_path / "out")
    assert "runs/vae/reconstructions.npz" in names and "runs/vae/checkpoint.pt" not in names
