"""The paper's table: conditional models see their attributes, the unconditional ones are as they
were, and the scores run from the floor (the condition ignored) to the ceiling (real faces)."""
import json

import pytest
import torch

from labkit import LabkitError, conditional as C
from labkit.__main__ import main
from labkit.models import CONDITIONAL, MODELS, Nets, compute_losses
from labkit.options import OPTIONS
from labkit.runs import Run, load_nets
from labkit.train import training_loop

from conftest import TINY, batch, forward, loss_rows, make

N_ATTRIBUTES = 3


def attributes(n, seed=0):
    return torch.randint(0, 2, (n, N_ATTRIBUTES), generator=torch.Generator().manual_seed(seed)).float() * 2 - 1


def losses_given(nets, x, y):
    """conftest.forward's losses, for a conditional model given the attributes y."""
    return compute_losses(nets, x, torch.Generator().manual_seed(1), {k: o.default for k, o in OPTIONS.items()}, y=y)


@pytest.mark.parametrize("model", list(CONDITIONAL))
def test_the_condition_reaches_every_network_and_every_loss(model):
    nets, x = make(model, attributes=N_ATTRIBUTES), batch()
    y = attributes(len(x)).requires_grad_()
    z = torch.randn(len(x), nets.latent)
    outputs = {"dec": nets.dec(z, y)}
    if hasattr(nets, "enc"):
        outputs["enc"] = nets.enc(x, y)[0]
    if hasattr(nets, "dis"):
        outputs["dis"] = nets.dis(x, y)[0]
    assert set(outputs) == set(CONDITIONAL[model].networks)
    for name, out in outputs.items():
        grad, = torch.autograd.grad(out.square().sum(), y)
        assert grad.abs().sum() > 0, name
    first, _ = losses_given(nets, x, y.detach())
    other, _ = losses_given(nets, x, -y.detach())
    for term in first:
        if "/" not in term:
            assert not torch.equal(first[term], other[term]), term


@pytest.mark.parametrize("model", list(CONDITIONAL))
def test_a_conditional_network_is_the_unconditional_one_plus_its_attributes(model):
    """With the weights of the attribute inputs at zero, the conditional networks compute what
    the unconditional ones of the same weights compute: the condition only adds inputs."""
    plain, cond = make(CONDITIONAL[model].base), make(model, attributes=N_ATTRIBUTES)
    own = plain.state_dict()
    with torch.no_grad():
        for key, value in cond.state_dict().items():
            if value.shape == own[key].shape:
                value.copy_(own[key])
            else:  # a first fully connected layer: the unconditional inputs, then the attributes'
                value.zero_()[:, :own[key].shape[1]] = own[key]
    x, y = batch(), attributes(8)
    for a, b in zip(forward(plain, x)[0].values(), losses_given(cond, x, y)[0].values()):
        torch.testing.assert_close(a, b)


# compute_losses of the four models at a seed and size, measured before the conditional models existed.
BEFORE = {"vae": {"rec": 0.1708756, "kl": 2.308493e-05},
          "vaedisl": {"kl": 0.000299272, "llike": 0.1133991, "d": 2.160747, "g": 1.385231},
          "vaegan": {"kl": 0.000299272, "llike": 0.1133991, "d": 2.160747, "g": 1.385231},
          "gan": {"d": 1.407568, "g": 0.6962998}}


@pytest.mark.parametrize("model", list(MODELS))
def test_the_unconditional_models_are_unchanged(model):
    assert not MODELS[model].conditional and list(MODELS) == list(BEFORE)
    nets = make(model)
    losses, _ = forward(nets, batch())
    assert {k: v.item() for k, v in losses.items() if k in BEFORE[model]} == pytest.approx(BEFORE[model], rel=1e-4)
    with pytest.raises(ValueError, match="given an attribute vector"):
        nets.dec(torch.randn(2, nets.latent), attributes(2))
    with pytest.raises(LabkitError, match="takes no attributes"):
        Nets(model, **TINY, attributes=N_ATTRIBUTES)
    with pytest.raises(LabkitError, match="needs attributes"):
        Nets(f"c{model}" if f"c{model}" in CONDITIONAL else "cvae", **TINY)


def test_a_conditional_run_trains_resumes_samples_and_records_its_attributes(faces_with_attributes, tmp_path, capsys):
    run = dict(model="cvaegan", profile="smoke", data=faces_with_attributes, epochs=2, batch=16, limit=64,
               log_every=2, progress=False, **TINY)
    training_loop(tmp_path / "straight", **run)
    nets, o = load_nets(tmp_path / "straight")
    assert o["attributes"] == ["Bright", "Coin", "Rare"] and nets.attributes == 3
    assert (tmp_path / "straight" / "grids" / "epoch-0002.png").is_file()
    training_loop(tmp_path / "resumed", **dict(run, epochs=1))
    training_loop(tmp_path / "resumed", resume=True, **run)
    assert loss_rows(tmp_path / "resumed") == loss_rows(tmp_path / "straight")
    assert main(["sample", str(tmp_path / "straight"), "--n", "8", "--out", str(tmp_path / "s.png")]) == 0
    assert "for the held-out faces' attributes" in capsys.readouterr().out and (tmp_path / "s.png").is_file()


def test_a_conditional_model_without_attributes_says_what_it_needs(celeba_like, tmp_path):
    with pytest.raises(LabkitError, match="conditional model trains on CelebA's attributes"):
        training_loop(tmp_path / "run", model="cgan", profile="smoke", data=celeba_like, progress=False, **TINY)
    assert not Run(tmp_path / "run").checkpoint.is_file()


# ----------------------------------------------------------------------------------------------
# scoring

@pytest.fixture
def marked_faces():
    """Faces that carry their attribute vector in their first pixels, a judge that reads it there
    (and misreads one attribute in ten), and the vectors."""
    n = 600
    conditions = attributes(n, seed=3)
    faces = torch.randint(0, 256, (n, 3, 64, 64), generator=torch.Generator().manual_seed(4), dtype=torch.uint8)
    faces[:, 0, 0, :N_ATTRIBUTES] = ((conditions > 0) * 255).to(torch.uint8)
    misread = torch.rand(n, N_ATTRIBUTES, generator=torch.Generator().manual_seed(5)) < 0.1
    lookup = {f.flatten()[:64].numpy().tobytes(): m for f, m in zip(faces, misread)}

    def read(images):
        bits = images[:, 0, 0, :N_ATTRIBUTES].float() / 255
        wrong = torch.stack([lookup[f.flatten()[:64].numpy().tobytes()] for f in images])
        return torch.where(wrong, 1 - bits, bits) * 0.8 + 0.1
    return faces, conditions, read


def test_a_perfect_generator_scores_the_ceiling_and_one_ignoring_the_condition_the_floor(marked_faces):
    faces, conditions, read = marked_faces
    shuffle = lambda seed: torch.randperm(len(faces), generator=torch.Generator().manual_seed(100 + seed))  # noqa: E731
    generators = {"perfect": lambda y, seed: faces, "ignores y": lambda y, seed: faces[shuffle(seed)]}
    names, judged = ["A", "B", "C"], torch.tensor([True, True, False])
    rows = C.score_table(generators, read, faces, conditions, names, judged)
    ceiling, floor = rows[C.CEILING], rows[C.FLOOR]
    for key in ("cosine", "mse", "agreement"):
        assert rows["perfect"][key] == ceiling[key] and rows["perfect"][f"{key}_sd"] == 0
        assert rows["ignores y"][key] == pytest.approx(floor[key], abs=0.05)
    assert ceiling["agreement"] == pytest.approx(0.9, abs=0.03) and floor["agreement"] == pytest.approx(0.5, abs=0.05)
    assert ceiling["cosine"] > floor["cosine"] + 0.5 and ceiling["mse"] < floor["mse"] - 1
    assert rows["perfect"]["followed"]["A"] == pytest.approx(0.9, abs=0.04)
    assert rows["ignores y"]["followed"]["A"] == pytest.approx(0.5, abs=0.06)
    assert rows["ignores y"]["agreement_sd"] > 0  # two seeds, two draws


def test_scores_of_exact_readings():
    y = torch.tensor([[1.0, -1.0, 1.0], [-1.0, -1.0, 1.0]])
    exact = C.scores((y + 1) / 2, y, torch.tensor([True, True, True]))
    assert exact == {"cosine": pytest.approx(1.0), "mse": 0.0, "agreement": 1.0}
    opposite = C.scores((1 - y) / 2, y, torch.tensor([True, True, False]))
    assert opposite == {"cosine": pytest.approx(-1.0), "mse": 4.0, "agreement": 0.0}


def test_the_conditional_command_trains_scores_and_draws(faces_with_attributes, tmp_path, capsys):
    figures = tmp_path / "figures"
    assert main(["conditional", "--data", str(faces_with_attributes), "--profile", "smoke", "--runs",
                 str(tmp_path / "runs"), "--figures", str(figures), "--cache", str(tmp_path / "cache"),
                 "--epochs", "1", "--limit", "64"]) == 0
    result = json.loads((figures / "conditional.json").read_text())
    titles = [CONDITIONAL[m].title for m in CONDITIONAL]
    assert list(result["rows"]) == [*titles, C.CEILING, C.FLOOR]
    assert result["protocol"]["scored_on"] == 200 and result["protocol"]["judged"] == ["Bright"]
    assert result["judge"]["attributes"]["Rare"]["verdict"] == "too rare"
    assert all(result["rows"][t]["steps"] == 2 for t in titles)
    assert (figures / "conditional.png").stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "| conditional VAE-GAN |" in out and "| real faces (ceiling) |" in out
    assert "Bright" in C.judge_table(result["judge"])


def test_the_reading_says_where_each_model_lies_and_whether_the_papers_order_holds():
    def row(cosine, mse, sd=0.001):
        return {"cosine": cosine, "cosine_sd": sd, "mse": mse, "mse_sd": sd}
    rows = {"conditional VAE": row(0.6, 0.6), "conditional VAE-GAN": row(0.7, 0.5),
            C.CEILING: row(0.8, 0.4, 0), C.FLOOR: row(0.3, 1.1)}
    text = C.reading({"rows": rows})
    assert "conditional VAE-GAN closes 80% of the way, conditional VAE closes 60%" in text
    assert "Best by cosine: conditional VAE-GAN, 0.100 above conditional VAE (well beyond" in text
    assert "so they are here, by both scores" in text
    rows["conditional VAE"] = row(0.75, 0.45)
    assert "not here, where the order by cosine is conditional VAE, conditional VAE-GAN" in C.reading({"rows": rows})
