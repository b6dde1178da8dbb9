"""The model registry: one entry and one loss function make a model that everything else follows."""
import pytest
import torch

from labkit import LabkitError
from labkit.__main__ import main
from labkit.losses import gaussian_llike
from labkit.models import MODELS, Model, Nets, compute_losses
from labkit.options import OPTIONS, options
from labkit.runs import Run, load_nets
from labkit.train import training_loop

from conftest import TINY, batch, forward, loss_rows, make


def l1_autoencoder(nets, x, y, draw, beta):
    """A toy model's loss function: a deterministic autoencoder judged by L1, with a KL-like penalty."""
    mu, _ = nets.enc(x)
    recon = nets.dec(mu)
    return {"l1": (recon - x).abs().mean(), "code": mu.float().square().mean(), "mse": gaussian_llike(x, recon)}


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(MODELS, "toy", Model("Toy AE", ("enc", "dec"), {"enc": "l1 + beta * code", "dec": "l1"},
                                             l1_autoencoder, ("beta",)))
    return "toy"


def test_a_model_added_by_one_entry_trains_resumes_and_loads(toy, tmp_path):
    run = dict(model=toy, profile="smoke", epochs=2, batch=16, limit=64, log_every=2, progress=False,
               optimizer="adam", lr=2e-3, **TINY)
    training_loop(tmp_path / "straight", **run)
    rows = [r for r in Run(tmp_path / "straight").stats() if "kimg" in r]
    assert {"loss/l1", "loss/code", "loss/mse"} <= set(rows[0])
    assert rows[-1]["loss/l1"] < rows[0]["loss/l1"]
    nets, o = load_nets(tmp_path / "straight")
    assert o["model"] == toy and nets.has_encoder and not hasattr(nets, "dis")
    training_loop(tmp_path / "resumed", **dict(run, epochs=1))
    training_loop(tmp_path / "resumed", resume=True, **run)
    assert loss_rows(tmp_path / "resumed") == loss_rows(tmp_path / "straight")


def test_the_entry_routes_each_network_to_its_objective(toy):
    nets, x = make(toy), batch()
    losses, objectives = forward(nets, x, beta=3.0)
    assert set(objectives) == {"enc", "dec"}
    torch.testing.assert_close(objectives["enc"], losses["l1"] + 3.0 * losses["code"])
    assert objectives["dec"] is losses["l1"]


def test_the_options_and_the_cli_know_a_registered_model(toy, capsys):
    assert options(model=toy, profile="smoke")["model"] == toy
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "toy" in capsys.readouterr().out


def test_an_unknown_model_is_refused_in_one_line():
    every = "vae, vaedisl, vaegan, gan, cvae, cgan, cvaegan"
    with pytest.raises(LabkitError, match=rf"^unknown model 'dcgan'; choose one of {every}$"):
        Nets("dcgan")
    nets = make("vae")
    nets.model = "dcgan"
    with pytest.raises(LabkitError, match="unknown model 'dcgan'"):
        compute_losses(nets, batch(), torch.Generator(), {})
    with pytest.raises(LabkitError, match="unknown model 'dcgan'"):
        options(model="dcgan")


@pytest.mark.parametrize("model", list(MODELS))
def test_every_entry_is_consistent_with_its_loss_function(model):
    spec = MODELS[model]
    nets = make(model)
    losses, objectives = forward(nets, batch())
    assert set(spec.trains) <= set(spec.networks) and set(objectives) == set(spec.trains)
    assert {n for n, _ in nets.named_children()} == set(spec.networks)
    for network in spec.trains:
        for weight, term in spec.terms(network):
            assert term in losses, (network, term)
            assert weight is None or weight in spec.settings, (network, weight)
    assert set(spec.settings) <= set(OPTIONS) and set(spec.loss_settings) <= set(OPTIONS)
    assert spec.has_encoder == ("enc" in spec.networks)


def test_vaedisl_is_the_vaegan_without_the_gan_gradient_in_its_decoder():
    vaegan, vaedisl = MODELS["vaegan"], MODELS["vaedisl"]
    assert vaedisl.networks == vaegan.networks and vaedisl.loss is vaegan.loss
    assert {n: vaedisl.trains[n] for n in ("enc", "dis")} == {n: vaegan.trains[n] for n in ("enc", "dis")}
    assert vaedisl.trains["dec"] == vaedisl.trains["enc"]  # the prior does not reach the decoder: L_llike alone
    assert vaegan.adversarial("dec") and not vaedisl.adversarial("dec")
