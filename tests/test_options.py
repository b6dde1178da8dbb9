"""The settings table, the profiles, and each VAE-GAN option doing what its help says."""
import json
import math

import pytest
import torch

from labkit import LabkitError
from labkit.__main__ import main
from labkit.losses import discriminator_loss
from labkit.models import MODELS
from labkit.options import OPTIONS, PROFILES, evaluation, options, settings_table
from labkit.runs import load_nets
from labkit.train import decoder_gradients, make_optimizers, set_lr, train_step, training_loop, updated

from conftest import TINY, batch, forward, make


def test_every_option_has_help_and_a_valid_default():
    for key, o in OPTIONS.items():
        assert o.help and len(o.help) > 10, key
    o = options(profile="full")
    assert (o["lr"], o["gamma"], o["latent"], o["epochs"], o["batch"]) == (3e-4, 5.0, 2048, 100, 64)


def test_profiles_set_sizes_and_callers_override_them(tmp_path):
    assert options(profile="smoke")["width"] == PROFILES["smoke"]["width"]
    assert options(profile="smoke", width=0.5)["width"] == 0.5
    assert options(profile="smoke", data=tmp_path)["data"] == str(tmp_path)  # JSON-ready
    with pytest.raises(LabkitError, match="unknown setting colour"):
        options(colour="red")


def test_a_profile_may_set_one_model_apart():
    # cpu: the KL weight of the models whose likelihood is on Dis_l is 8, the VAE keeps the handout's 1.
    assert options(model="vaegan", profile="cpu")["beta"] == options(model="vaedisl", profile="cpu")["beta"] == 8.0
    assert options(model="vae", profile="cpu")["beta"] == options(model="gan", profile="cpu")["beta"] == 1.0
    assert options(model="vaegan", profile="cpu", beta=2.0)["beta"] == 2.0  # the caller's still wins
    assert options(profile="cpu")["beta"] == 8.0  # the default model is the VAE-GAN
    for settings in PROFILES.values():
        for model, own in settings.get("per_model", {}).items():
            assert model in MODELS and set(own) <= set(OPTIONS), model


def test_cli_flags_come_from_the_table(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for key in OPTIONS:
        assert "--" + key.replace("_", "-") in text, key
    assert "--no-recon-fake" in text


def test_the_settings_table_has_a_column_per_model_and_marks_what_is_not_the_handouts():
    runs = {m: options(model=m, profile="cpu") for m in MODELS}
    text = settings_table(runs)
    head, rule, *rows = text.split("\n\n")[0].splitlines()
    assert head == "| setting | handout | VAE (hw2) | VAE-Dis_l | VAE-GAN | GAN (hw3) |"
    row = {r.split(" | ")[0][3:-1]: r.split(" | ")[1:] for r in rows}
    assert row["beta"] == ["1", "1", "**8**", "**8**", "– |"]           # the GAN has no KL term
    assert row["gamma"] == ["5", "–", "–", "**10**", "– |"]             # only the VAE-GAN weighs L_llike against L_G
    assert row["width"] == ["1", "**0.25**", "**0.25**", "**0.25**", "**0.25** |"]
    assert row["seed"] == ["0", "0", "0", "0", "0 |"]
    assert "- `gamma`: " + OPTIONS["gamma"].help in text and "- `seed`" not in text  # what the bold ones mean
    assert "**" not in settings_table({m: options(model=m, profile="full") for m in MODELS})


@pytest.mark.parametrize("bad, message", [
    (dict(d_weights="third"), "unknown d_weights 'third'"),
    (dict(dec_batch="both"), "unknown dec_batch"),
    (dict(init="he"), "unknown init"),
    (dict(recon_fake="no"), "recon_fake must be true or false"),
    (dict(margin=0.9), r"margin must be in \[0, 0.68\]"),
    (dict(lr_decay=0.0), r"lr_decay must be in \(0, 1\]"),
    (dict(weight_decay=-1e-5), r"weight_decay must be in \[0, 1\]"),
    (dict(feature_layer=5), "feature_layer must be an integer from 1 to 4, got 5"),
])
def test_bad_vaegan_settings_are_one_line(bad, message):
    with pytest.raises(LabkitError, match=message):
        options(profile="smoke", **bad)


def test_half_weighting_is_the_authors_and_sum_is_algorithm_1():
    zero = torch.zeros(16)
    assert discriminator_loss(zero, [zero, zero], "sum").item() == pytest.approx(3 * math.log(2))
    assert discriminator_loss(zero, [zero, zero], "half").item() == pytest.approx(math.log(2))
    real, fakes = torch.full((16,), 2.0), [torch.full((16,), -1.0), torch.full((16,), 1.0)]
    sp = torch.nn.functional.softplus
    expected = 0.5 * sp(-real).mean() + 0.5 * (sp(fakes[0]).mean() + sp(fakes[1]).mean()) / 2
    assert discriminator_loss(real, fakes, "half").item() == pytest.approx(expected.item())


@pytest.mark.parametrize("recon_fake, fakes", [(True, 2), (False, 1)])
def test_recon_fake_decides_what_the_gan_terms_see(recon_fake, fakes):
    nets, x = make(), batch()
    losses, objectives = forward(nets, x, recon_fake=recon_fake)
    # sum weighting: L_D = cost on real + cost on each fake batch it sees
    sum_of_costs = losses["diag/cost_real"].item() + fakes * losses["diag/cost_fake"].item()
    assert losses["d"].item() == pytest.approx(sum_of_costs, rel=1e-5)
    # Without reconstructions among the fakes, no GAN term depends on the encoder at all (the
    # authors' CelebA script): neither D's loss nor the decoder's generator loss.
    enc = list(nets.enc.parameters())
    grads = torch.autograd.grad(objectives["dis"] + losses["g"], enc, allow_unused=True, retain_graph=True)
    touched = any(g is not None and g.abs().sum() > 0 for g in grads)
    assert touched == recon_fake


def test_normalised_feature_loss_ignores_the_scale_of_layer_l():
    x = batch()
    raw, norm = {}, {}
    for scale in (1.0, 3.0):
        nets = make()
        with torch.no_grad():
            nets.dis.layer_l.weight.mul_(scale)  # a BatchNorm follows: D's output barely moves
        raw[scale] = forward(nets, x)[0]["llike"].item()
        norm[scale] = forward(nets, x, feature_norm=True)[0]["llike"].item()
    assert raw[3.0] == pytest.approx(9 * raw[1.0], rel=1e-4)
    assert norm[3.0] == pytest.approx(norm[1.0], rel=1e-4)


@pytest.mark.parametrize("dec_batch, calls", [("split", [8, 8]), ("joint", [16])])
def test_dec_batch_decodes_reconstructions_and_samples_together_or_apart(dec_batch, calls):
    nets, seen = make(), []
    nets.dec.register_forward_hook(lambda m, i, o: seen.append(len(i[0])))
    forward(nets, batch(), dec_batch=dec_batch)
    assert seen == calls


def costs(real, fake):
    return {"diag/cost_real": torch.tensor(real), "diag/cost_fake": torch.tensor(fake)}


def test_equilibrium_rule_freezes_the_winner():
    opts, vaegan, vaedisl = {"enc": 0, "dec": 0, "dis": 0}, MODELS["vaegan"], MODELS["vaedisl"]
    assert updated(vaegan, opts, costs(0.7, 0.7), 0.35) == ["enc", "dec", "dis"]
    assert updated(vaegan, opts, costs(0.1, 0.7), 0.35) == ["enc", "dec"]      # D wins on real: freeze D
    assert updated(vaegan, opts, costs(0.7, 1.5), 0.35) == ["enc", "dis"]      # D wins on fakes: freeze the decoder
    assert updated(vaegan, opts, costs(0.1, 1.5), 0.35) == ["enc", "dec", "dis"]  # both would freeze: both step
    assert updated(vaegan, opts, costs(0.1, 1.5), 0.0) == ["enc", "dec", "dis"]  # 0: the rule is off
    # VAE-Dis_l's decoder does not play the game: nothing to balance, every network always steps (a D
    # frozen whenever it won would stop learning for good, its decoder never fighting back).
    for real, fake in ((0.7, 1.5), (0.1, 0.7), (0.1, 1.5), (0.7, 0.1)):
        assert updated(vaedisl, opts, costs(real, fake), 0.35) == ["enc", "dec", "dis"]


def test_a_frozen_network_keeps_its_weights_for_the_step(monkeypatch):
    from labkit import train as T
    nets, x = make(), batch()
    o = options(profile="smoke", margin=0.35, **TINY)
    opts = make_optimizers(nets, o, torch.device("cpu"))
    monkeypatch.setattr(T, "updated", lambda model, opts, losses, margin: ["enc", "dec"])
    before = [p.clone() for p in nets.dis.parameters()], [p.clone() for p in nets.enc.parameters()]
    out = train_step(nets, opts, x, torch.Generator().manual_seed(0), o)
    assert all(torch.equal(a, b) for a, b in zip(before[0], nets.dis.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(before[1], nets.enc.parameters()))
    assert out["diag/updates_dis"].item() == 0 and out["diag/updates_dec"].item() == 1


def test_lr_decay_is_a_function_of_the_step():
    nets = make()
    o = options(profile="smoke", lr=1e-3, lr_decay=0.1, **TINY)
    opts = make_optimizers(nets, o, torch.device("cpu"))
    lrs = []
    for step in (0, 50, 100):
        set_lr(opts, o, step, 101)
        lrs.append(opts["dec"].param_groups[0]["lr"])
    assert lrs == pytest.approx([1e-3, 1e-3 * 0.1 ** 0.5, 1e-4])


def test_weight_decay_and_glorot_init():
    o = options(profile="smoke", weight_decay=1e-5, **TINY)
    assert make_optimizers(make(), o, torch.device("cpu"))["dis"].param_groups[0]["weight_decay"] == 1e-5
    fc = make(init="glorot").dis.head[3]
    assert fc.weight.std().item() == pytest.approx(math.sqrt(2 / sum(fc.weight.shape)), rel=0.1)
    assert make().dis.head[3].weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_decoder_gradient_diagnostics_measure_each_term_of_its_objective():
    x = batch()
    one, ten = make(), make()
    one = decoder_gradients(one, forward(one, x)[0], dict(gamma=1.0))
    ten = decoder_gradients(ten, forward(ten, x)[0], dict(gamma=10.0))
    assert ten["diag/dec_grad_llike"].item() == pytest.approx(10 * one["diag/dec_grad_llike"].item(), rel=1e-4)
    assert ten["diag/dec_grad_g"].item() == pytest.approx(one["diag/dec_grad_g"].item(), rel=1e-4)
    gan, vaedisl = make("gan"), make("vaedisl")
    assert set(decoder_gradients(gan, forward(gan, x)[0], {})) == {"diag/dec_grad_g"}
    assert set(decoder_gradients(vaedisl, forward(vaedisl, x)[0], dict(beta=1.0))) == {"diag/dec_grad_llike",
                                                                                    "diag/layer_l_norm"}


def test_every_option_is_recorded_and_diagnostics_are_logged(tmp_path):
    settings = dict(d_weights="half", recon_fake=False, feature_layer=3, feature_norm=True, dec_batch="joint",
                    margin=0.35, lr_decay=0.5, weight_decay=1e-5, init="glorot")
    training_loop(tmp_path, model="vaegan", profile="smoke", epochs=1, batch=16, limit=64, log_every=2,
                  progress=False, **TINY, **settings)
    recorded = json.loads((tmp_path / "options.json").read_text())
    assert {k: recorded[k] for k in settings} == settings
    nets, _ = load_nets(tmp_path)  # the trained run's layer-3 discriminator, rebuilt from its options
    assert nets.dis(torch.zeros(2, 3, 64, 64))[1].shape[-1] == 16
    rows = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    logged = set().union(*rows)
    assert {"diag/D_real", "diag/D_prior", "diag/dec_grad_llike", "diag/dec_grad_g",
            "diag/layer_l_norm", "diag/updates_dis", "diag/updates_dec"} <= logged
    assert all(0 <= r["diag/D_real"] <= 1 for r in rows if "diag/D_real" in r)


def test_evaluation_sizes_reach_a_notebook_as_python_values():
    from papermill.translators import PythonTranslator
    sizes = evaluation("cpu", eval_n=500)
    assert sizes == {"eval_n": 500, "n_ref": 1000, "eval_sets": ["prior", "recon"]}
    namespace = {}
    exec(PythonTranslator.codify(sizes), namespace)  # what papermill writes into 03_results' parameters cell
    assert namespace["eval_sets"] == ["prior", "recon"] and evaluation("full")["eval_sets"] is None
