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


def test_diagnostics_draw_each_logged_quantity_a_row_per_model_with_a_discriminator(tmp_path):
    runs = {"VAE-GAN": tiny_run(tmp_path / "vaegan", model="vaegan", recon_fake=False, margin=0.35),
            "VAE": tiny_run(tmp_path / "vae", model="vae", margin=0.35),  # the rule has no D to freeze: nothing logged
            # a margin set but no game to balance: the rule does not run, nothing to shade
            "VAE-Dis_l": tiny_run(tmp_path / "vaedisl", model="vaedisl", margin=0.35)}
    assert not any(k.startswith("diag/") for r in Run(runs["VAE"]).stats() for k in r)
    fig = plots.diagnostics(runs, tmp_path / "diagnostics.png")
    rows = {}
    for ax in fig.axes:
        if ax.get_ylabel():
            current = rows.setdefault(ax.get_ylabel(), {})
        current[ax.get_title()] = [line.get_label() for line in ax.get_lines()]
    assert list(rows) == ["VAE-GAN", "VAE-Dis_l"]  # the VAE has no row
    vaegan, vaedisl = rows["VAE-GAN"], rows["VAE-Dis_l"]
    assert vaegan["D's probability D(x)"] == ["D_real", "D_prior"]  # D never saw reconstructions
    assert vaegan["decoder gradient, by term"] == ["dec_grad_llike", "dec_grad_g"]
    assert vaegan["share of steps updated"] == ["updates_dis", "updates_dec"]
    assert vaedisl["decoder gradient, by term"] == ["dec_grad_llike"]  # no GAN gradient
    assert vaedisl["share of steps updated"] == []  # no rule, nothing drawn in its row, and it says why
    empty = next(ax for ax in fig.axes if ax.get_title() == "share of steps updated" and not ax.get_lines())
    assert [t.get_text() for t in empty.texts] == [plots.UNLOGGED["updates_dis"]] and not empty.axison
    assert len(vaegan) == 5 and (tmp_path / "diagnostics.png").stat().st_size > 0
    vaegan_cost, vaedisl_cost = [ax for ax in fig.axes if ax.get_title().startswith("D's cost")]
    assert vaegan_cost.patches, "the equilibrium rule's band is drawn when the rule is on"
    assert not vaedisl_cost.patches, "and only then"
    assert plots.diagnostics({"VAE": runs["VAE"]}) is None
