"""The committed results (figures/<profile>/) agree with themselves: measured under their
profile's protocol and settings, every model present, every figure there, and the committed
report prints the numbers of the committed metrics JSON (the smoke report test runs the same
check on a fresh smoke report)."""
import pytest

from labkit.options import evaluation
from labkit.report import ROOT

from conftest import assert_results_consistent

COMMITTED = sorted(p.parent.name for p in (ROOT / "figures").glob("*/metrics.json"))


@pytest.mark.skipif(not COMMITTED, reason="no results committed under figures/<profile>/ yet")
@pytest.mark.parametrize("profile", COMMITTED)
def test_committed_results_are_consistent(profile):
    folder = ROOT / "figures" / profile
    assert (folder / "ablation.json").is_file(), "published results come with their ablation table"
    assert_results_consistent(folder, folder / "report.pdf", evaluation(profile), dict(profile=profile))
