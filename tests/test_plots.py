"""The diagnostics figure draws what the run logged, and nothing for a model without diagnostics."""
import matplotlib

matplotlib.use("Agg")

from labkit import plots
from labkit.runs import Run
from labkit.train import training_loop

from conftest import TINY


def tiny_run(path, **settings):
    return training_loop(path, profile="smoke", epochs=1, batch=16, limit=64, log_every=2, progress=False,
                         **TINY, **settings)


def test_diagnostics_draw_each_logged_quantity(tmp_path):
    run = tiny_run(tmp_path / "vaegan", model="vaegan", recon_fake=False, margin=0.35)
    fig = plots.diagnostics(run, tmp_path / "diagnostics.png")
    panels = {ax.get_title(): [line.get_label() for line in ax.get_lines()] for ax in fig.axes if ax.axison}
    assert panels["D's probability D(x)"] == ["D_real", "D_prior"]  # D never saw reconstructions
    assert panels["decoder gradient norm, by term"] == ["dec_grad_feature", "dec_grad_gan"]
    assert panels["share of steps updated"] == ["updates_dis", "updates_dec"]
    assert len(panels) == 5 and (tmp_path / "diagnostics.png").stat().st_size > 0
    cost = next(ax for ax in fig.axes if ax.get_title().startswith("D's cost"))
    assert cost.patches, "the equilibrium rule's band is drawn when the rule is on"


def test_diagnostics_only_for_models_with_a_discriminator(tmp_path):
    vae = tiny_run(tmp_path / "vae", model="vae", margin=0.35)  # the rule has no D to freeze: nothing logged
    assert not any(k.startswith("diag/") for r in Run(vae).stats() for k in r)
    assert plots.diagnostics(vae) is None
    gan = plots.diagnostics(tiny_run(tmp_path / "gan", model="gan"))
    assert "share of steps updated" not in [ax.get_title() for ax in gan.axes]  # no rule, no updates panel
