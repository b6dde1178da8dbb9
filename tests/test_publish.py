"""A report writes only into its build folder; publishing into figures/<profile>/ is its own step."""
import json
import shutil

import pytest

from labkit import LabkitError, report as R
from labkit.__main__ import main
from labkit.publish import publish


def test_a_cpu_report_writes_its_figures_into_the_build_folder_not_the_committed_ones(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(R, "run_notebook", lambda name, out, build, parameters: seen.append(parameters))
    monkeypatch.setattr(R, "export", lambda build: {})
    R.build_report("cpu", tmp_path / "build", data=None)
    assert seen and {p["figures_dir"] for p in seen} == {str(tmp_path / "build" / "figures")}


def fake_report(build, profile="cpu", runs=("vae", "vaegan"), mse=0.01):
    (build / "figures").mkdir(parents=True)
    (build / "report.json").write_text(json.dumps({"facts": {"profile": profile}, "sizes": {}}))
    (build / "report.pdf").write_bytes(b"%PDF-1.5 new")
    for name in ("samples.png", "reconstructions.png"):
        (build / "figures" / name).write_bytes(b"new " + name.encode())
    metrics = {"protocol": {"reference": "/data/celeba64_holdout.h5", "reference_count": 1000},
               "runs": {m: {"model": m, "mse": mse} for m in runs}}
    (build / "figures" / "metrics.json").write_text(json.dumps(metrics))
    return build


def test_publish_replaces_the_results_and_drops_what_no_longer_belongs(tmp_path, capsys):
    dest = tmp_path / "repo" / "figures" / "cpu"
    dest.mkdir(parents=True)
    (dest / "loss_vae.png").write_bytes(b"a figure the new report no longer draws")
    (dest / "samples.png").write_bytes(b"old")
    for made_apart in ("ablation.json", "conditional.json", "conditional.png"):  # by other commands: kept
        (dest / made_apart).write_text("{}")
    judged = {"protocol": {"faces": "/x/celeba64_holdout.h5", "count": 1000}, "rows": {"vae": {"mse": 0.02}}}
    (dest / "identity.json").write_text(json.dumps(judged))  # judged other runs
    build = fake_report(tmp_path / "build")
    folder, removed = publish(build, root=tmp_path / "repo")
    assert folder == dest and sorted(removed) == ["identity.json", "loss_vae.png"]
    assert sorted(p.name for p in dest.iterdir()) == ["ablation.json", "conditional.json", "conditional.png",
                                                      "metrics.json", "reconstructions.png", "report.json",
                                                      "report.pdf", "samples.png"]
    assert (dest / "samples.png").read_bytes() == b"new samples.png"
    judged["rows"] = {"vae": {"mse": 0.01}, "vaegan": {"mse": 0.01}}  # now it judged these very runs: kept
    (dest / "identity.json").write_text(json.dumps(judged))
    assert publish(build, root=tmp_path / "repo")[1] == []
    (build / "figures" / "identity.json").write_text(json.dumps(judged) + "\n")  # measured into the build: goes along
    assert publish(build, root=tmp_path / "repo")[1] == []
    assert (dest / "identity.json").read_text() == json.dumps(judged) + "\n"


def test_publish_refuses_a_smoke_check_and_an_unfinished_report(tmp_path, capsys):
    with pytest.raises(LabkitError, match="a smoke check, not results"):
        publish(fake_report(tmp_path / "smoke", profile="smoke"), root=tmp_path)
    assert main(["publish", "--build", str(tmp_path / "nothing")]) == 2
    assert "no finished report" in capsys.readouterr().err


def test_publish_exports_the_runs_weights_with_a_model_card(two_runs, tmp_path):
    from labkit.metrics import evaluate
    from labkit.pretrained import load

    from conftest import tiny_extractor
    build = tmp_path / "build"
    shutil.copytree(two_runs, build / "runs")
    fake_report(build)
    evaluate([build / "runs" / m for m in ("vae", "gan")], n=16, n_ref=16, extractor=tiny_extractor(),
             out=build / "figures" / "metrics.json")
    record = {"facts": {"profile": "cpu", "data": "synthetic faces", "device": "CPU", "torch": "2.x", "commit": "abc"},
              "sizes": {}}
    (build / "report.json").write_text(json.dumps(record))
    dest, _ = publish(build, root=tmp_path / "repo")
    weights = dest / "weights"
    assert sorted(p.name for p in weights.iterdir()) == ["README.md", "gan.safetensors", "vae.safetensors"]
    nets, info = load(weights / "vae.safetensors")
    assert info["settings"]["model"] == "vae" and set(info["directions"]) == {f"PC{i}" for i in range(1, 6)}
    card = (weights / "README.md").read_text()
    assert "non-commercial research only" in card and "| `vae.safetensors` | VAE (hw2) |" in card
    assert "| setting | handout | VAE (hw2) | GAN (hw3) |" in card and "| FID prior samples |" in card
