import pytest
import torch

from labkit import data as D
from labkit.losses import feature_llike
from labkit.metrics import sharpness
from labkit.models import Nets
from labkit.similarity import charges, markdown, perturbations

from conftest import TINY

FACES = torch.from_numpy(D.synthetic_images(8, seed=2))


def test_each_change_costs_the_asked_pixel_error_and_is_repeatable():
    changed = perturbations(FACES, mse=0.01)
    assert list(changed) == ["colour shift", "colour blotches", "blur", "pixel noise"]
    for name, y in changed.items():
        assert y.dtype == torch.uint8 and y.shape == FACES.shape
        mse = torch.nn.functional.mse_loss(y.float() / 255, FACES.float() / 255).item()
        assert 0.006 < mse < 0.0105, name  # below 0.01 only where clipping to [0, 255] cuts a change
    assert all(torch.equal(a, b) for a, b in zip(changed.values(), perturbations(FACES, mse=0.01).values()))
    assert not torch.equal(changed["pixel noise"], perturbations(FACES, mse=0.01, seed=1)["pixel noise"])


def test_the_blur_softens_every_face_and_never_sharpens_one():
    blurred = perturbations(FACES)["blur"]
    for face, soft in zip(FACES, blurred):
        assert sharpness(soft[None]) < 0.5 * sharpness(face[None])


def test_a_colour_shift_moves_every_pixel_of_a_face_by_the_same_amount():
    grey = torch.full((2, 3, 64, 64), 128, dtype=torch.uint8)  # nothing to clip
    shift = perturbations(grey)["colour shift"].float() - grey.float()
    assert torch.equal(shift, shift[:, :, :1, :1].expand_as(shift)) and shift.abs().sum() > 0


@pytest.mark.parametrize("normalized", [False, True])
def test_charges_are_the_training_loss_on_the_discriminators_layer(normalized):
    torch.manual_seed(0)
    nets = Nets("vaegan", **TINY, feature_layer=2).eval()
    changed = perturbations(FACES)
    rows = charges(nets, FACES, {"same": FACES, **changed}, normalized, batch=3)
    assert rows["same"] == {"mse": 0.0, "llike": 0.0}
    with torch.no_grad():
        expected = feature_llike(nets.dis(D.to_float(FACES))[1], nets.dis(D.to_float(changed["blur"]))[1], normalized)
    assert rows["blur"]["llike"] == pytest.approx(expected.item(), rel=1e-5)
    assert rows["blur"]["mse"] == pytest.approx(torch.nn.functional.mse_loss(changed["blur"].float() / 255,
                                                                             FACES.float() / 255).item())


def test_the_table_puts_every_change_against_blur():
    table = markdown({"blur": {"mse": 0.01, "llike": 0.3}, "colour shift": {"mse": 0.02, "llike": 0.15}})
    assert "| blur | 0.0100 | 0.300 | 1.00 |" in table and "| colour shift | 0.0200 | 0.150 | 0.25 |" in table
