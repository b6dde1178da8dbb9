import json

import pytest

from labkit import LabkitError, ablation as ablation_module
from labkit.ablation import HANDOUT, ROWS, ablation, kept, markdown, rows
from labkit.metrics import evaluate
from labkit.options import PROFILES

from conftest import TINY, tiny_extractor


def test_each_row_changes_the_handout_and_kept_is_added_only_when_new(monkeypatch):
    assert all(set(change) <= set(HANDOUT) and all(HANDOUT[k] != v for k, v in change.items())
               for change in ROWS.values())
    assert kept("smoke") == {} and "kept" not in rows("smoke")
    assert kept("cpu")["beta"] == 8.0 and "kept" not in rows("cpu")  # the VAE-GAN's own setting, and a row
    monkeypatch.setitem(PROFILES["smoke"], "d_weights", "half")
    assert kept("smoke") == {"d_weights": "half"}
    assert "kept" not in rows("smoke")  # the same as the row d_weights=half: trained once
    monkeypatch.setitem(PROFILES["smoke"], "margin", 0.35)
    assert rows("smoke")["kept"] == {"d_weights": "half", "margin": 0.35}


def test_ablation_trains_and_evaluates_each_row_once_and_tabulates(tmp_path, monkeypatch):
    run = dict(profile="smoke", names=["handout", "d_weights=half"], extractor=tiny_extractor(), eval_n=32, n_ref=32,
               progress=False, epochs=1, batch=16, limit=32, **TINY)
    text = ablation(tmp_path, **run)
    assert "\n| handout | " in text and "\n| d_weights=half | " in text
    metrics = json.loads((tmp_path / "ablation.json").read_text())
    assert metrics["runs"]["d_weights=half"]["options"]["d_weights"] == "half"
    assert metrics["runs"]["handout"]["options"]["d_weights"] == "sum"
    assert metrics["runs"]["handout"]["options"]["epochs"] == 1  # the probe's size, not the profile's
    assert all(r["train_seconds"] > 0 for r in metrics["runs"].values())
    snapshots = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/*.pt")}
    assert len(snapshots) >= 2
    evaluated = []
    monkeypatch.setattr(ablation_module, "evaluate",
                        lambda runs, **kw: evaluated.append([r.name for r in runs]) or evaluate(runs, **kw))
    assert ablation(tmp_path, **run) == text  # a second call reuses the trained and evaluated rows
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/*.pt")} == snapshots
    # A new row alone: only it is trained and evaluated, and the table keeps the earlier rows.
    text = ablation(tmp_path, **dict(run, names=["feature_norm"]))
    assert evaluated == [[], ["feature_norm"]]
    assert "| handout |" in text and "| d_weights=half |" in text and "| feature_norm |" in text
    grown = json.loads((tmp_path / "ablation.json").read_text())["runs"]
    assert list(grown) == ["handout", "d_weights=half", "feature_norm"]  # the order of ROWS
    assert grown["handout"] == metrics["runs"]["handout"]
    # A row trained further since it was evaluated is evaluated again.
    ablation(tmp_path, **dict(run, names=["handout"], epochs=2))
    assert evaluated[-1] == ["handout"]
    # Another protocol, with handout's result stale: every named row is evaluated again, each
    # once, and only those rows are shown.
    stale = json.loads((tmp_path / "ablation.json").read_text())
    stale["runs"]["handout"]["steps"] = -1
    (tmp_path / "ablation.json").write_text(json.dumps(stale))
    ablation(tmp_path, **dict(run, names=["handout", "feature_norm"], eval_n=16))
    assert evaluated[-2:] == [["handout"], ["feature_norm"]]
    again = json.loads((tmp_path / "ablation.json").read_text())
    assert list(again["runs"]) == ["handout", "feature_norm"] and again["protocol"]["generated_count"] == 16
    with pytest.raises(LabkitError, match="unknown ablation row"):
        ablation(tmp_path, **dict(run, names=["handout", "gamma=50"]))
    # The table marks the row the profile keeps.
    monkeypatch.setitem(PROFILES["smoke"], "feature_norm", True)
    table = markdown(again)
    assert "\n| feature_norm (kept) | " in table and "\n| handout | " in table
    steps = sorted({r["steps"] for r in again["runs"].values()})
    assert len(steps) == 2 and f"Trained {steps[0]:,} steps of batch 16 or {steps[1]:,} steps of batch 16;" in table
