"""The committed results (figures/<profile>/) agree with themselves: measured under their
profile's protocol and settings, every model present, every figure there, and the committed
report prints the numbers of the committed metrics JSON (the smoke report test runs the same
check on a fresh smoke report)."""
import json

import pytest

from labkit.identity import unjudged
from labkit.report import ROOT

from conftest import assert_results_consistent

COMMITTED = sorted(p.parent.name for p in (ROOT / "figures").glob("*/metrics.json"))


@pytest.mark.skipif(not COMMITTED, reason="no results committed under figures/<profile>/ yet")
@pytest.mark.parametrize("profile", COMMITTED)
def test_committed_results_are_consistent(profile):
    """As measured and trained by the report that made them (report.json: its sizes, and the settings
    that overrode the profile's, e.g. the epochs an offline GPU job had time for)."""
    folder = ROOT / "figures" / profile
    record = json.loads((folder / "report.json").read_text())
    assert record["facts"]["profile"] == profile
    if profile == "cpu":  # the ablation and the paper's table are CPU experiments: a GPU job runs neither
        assert (folder / "ablation.json").is_file(), "the cpu results come with their ablation table"
        assert (folder / "conditional.json").is_file(), "the cpu results come with the paper's attribute table"
    settings = dict(profile=profile, **record["settings"])
    assert_results_consistent(folder, folder / "report.pdf", record["sizes"], settings)


@pytest.mark.skipif(not COMMITTED, reason="no results committed under figures/<profile>/ yet")
@pytest.mark.parametrize("profile", COMMITTED)
def test_committed_identity_was_measured_on_the_published_runs(profile):
    """identity.json (python -m labkit identity) judged the networks metrics.json scored, on the
    same held-out faces: their reconstructions' pixel error agrees to the last digit."""
    folder = ROOT / "figures" / profile
    if not (folder / "identity.json").is_file():
        pytest.skip(f"no identity.json in figures/{profile}")
    metrics, identity = (json.loads((folder / f).read_text()) for f in ("metrics.json", "identity.json"))
    assert unjudged(identity, metrics) == []
    floor = identity["protocol"]["floor"]["same_person"]
    assert floor < min(r["same_person"] for r in identity["rows"].values())
