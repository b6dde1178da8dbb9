"""The demo's widget and what it explores: a trained run when there is one, else the published weights."""
import pytest
import torch

from labkit import data as D, pretrained
from labkit.models import Nets
from labkit.train import training_loop
from labkit.widgets import LatentExplorer, demo_inputs

from conftest import TINY


def test_latent_sliders_change_the_decoded_face():
    torch.manual_seed(0)
    nets = Nets("vaegan", 16, 1 / 16)
    starts = {f"code {i}": z for i, z in enumerate(torch.randn(3, 16, generator=torch.Generator().manual_seed(0)) * 3)}
    ex = LatentExplorer(nets, starts, {"up": torch.ones(16), "down": -torch.ones(16)})
    first = bytes(ex.image.value)
    assert first.startswith(b"\x89PNG")
    ex.sliders["up"].value = 2.0
    moved = bytes(ex.image.value)
    assert moved != first
    ex.sliders["down"].value = 2.0  # cancels "up" exactly
    assert bytes(ex.image.value) == first
    ex.blend.value = 1.0  # all the way to the second start
    torch.testing.assert_close(ex.code(), ex.codes[1] + 2 * torch.ones(16) - 2 * torch.ones(16))
    assert bytes(ex.image.value) != first
    ex.reset.click()
    assert all(s.value == 0 for s in ex.sliders.values())


def test_the_demo_explores_a_trained_run_with_held_out_faces_when_there_are(tmp_path, celeba_like):
    training_loop(tmp_path / "runs" / "vaegan", model="vaegan", profile="smoke", epochs=1, batch=16, limit=64,
                  data=celeba_like, progress=False, **TINY)
    nets, starts, directions, source = demo_inputs(tmp_path / "runs", data=celeba_like, n=4)
    assert source == f"the trained run {tmp_path / 'runs' / 'vaegan'}"
    assert list(starts) == [f"sample {i}" for i in range(1, 5)] + [f"held-out face {i}" for i in range(1, 5)]
    torch.testing.assert_close(starts["held-out face 2"], nets.encode(D.holdout_set(celeba_like, 4)[0])[1])
    assert list(directions) == ["PC1", "PC2", "PC3"]  # no attribute list beside these faces
    assert directions["PC1"].shape == (TINY["latent"],)


@pytest.mark.skipif(not (pretrained.PUBLISHED / "vaegan.safetensors").is_file(), reason="no published VAE-GAN")
def test_without_a_trained_run_or_celeba_the_demo_explores_the_published_weights(tmp_path):
    nets, starts, directions, source = demo_inputs(tmp_path / "no-runs", data=None)
    assert source.startswith("the published weights") and list(starts) == [f"sample {i}" for i in range(1, 9)]
    assert {"PC1", "Smiling", "Eyeglasses", "Male"} <= set(directions)  # shipped beside the weights
    faces = nets.decode(torch.stack(list(starts.values())))
    assert faces.float().std() > 20  # trained faces, not a flat field
