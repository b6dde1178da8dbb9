"""The committed results (figures/<profile>/) agree with themselves: measured under their
profile's protocol and settings, every model present, every figure there, and the committed
report prints the numbers of the committed metrics JSON."""
import json
import math

import pytest

from labkit.metrics import SETS
from labkit.models import MODELS
from labkit.options import evaluation, options
from labkit.report import ROOT

from conftest import FIGURES, pdf_text

COMMITTED = sorted(p.parent.name for p in (ROOT / "figures").glob("*/metrics.json"))


@pytest.mark.skipif(not COMMITTED, reason="no results committed under figures/<profile>/ yet")
@pytest.mark.parametrize("profile", COMMITTED)
def test_committed_results_are_consistent(profile):
    folder = ROOT / "figures" / profile
    metrics = json.loads((folder / "metrics.json").read_text())
    p, runs = metrics["protocol"], metrics["runs"]
    sizes = evaluation(profile)
    assert p["generated_count"] == sizes["eval_n"] and p["floor_count"] == sizes["eval_n"]
    assert p["reference_count"] == (sizes["n_ref"] or p["reference_count"])
    assert p["sets"] == list(sizes["eval_sets"] or SETS)
    assert set(runs) == set(MODELS)
    for name, run in runs.items():
        assert run["model"] == name
        expected = options(profile=profile, model=name)
        assert run["options"] == {k: expected[k] for k in run["options"]}, name
        assert all(math.isfinite(v) for v in run.values() if isinstance(v, float)), name
    assert FIGURES <= {f.name for f in folder.glob("*.png")}

    text = pdf_text(folder / "report.pdf")
    for name, run in runs.items():
        for key in ("fid_prior", "fid_recon", "sharpness_prior"):
            if key in run:
                assert f"{run[key]:.4g}" in text, (name, key)
    assert f"{p['floor_fid']:.4g}" in text
