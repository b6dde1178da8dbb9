"""Published weights: exported from a run, loaded in one call, and, for the committed ones, the very
networks the committed figures and metrics came from."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from labkit import LabkitError, data as D, plots, pretrained
from labkit.__main__ import main
from labkit.metrics import recon_errors
from labkit.models import MODELS
from labkit.runs import load_nets
from labkit.train import training_loop

from conftest import TINY, shared_data

PUBLISHED = sorted(p.stem for p in pretrained.PUBLISHED.glob("*.safetensors"))
RESULTS = pretrained.PUBLISHED.parent


@pytest.fixture(scope="module")
def vaegan_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "vaegan"
    return training_loop(run, model="vaegan", profile="smoke", epochs=1, batch=16, limit=64, ema=0.05, progress=False,
                         **TINY)


def test_export_keeps_what_sampling_and_reconstruction_need_and_loads_in_one_call(vaegan_run, tmp_path):
    from safetensors import safe_open
    path = pretrained.export(vaegan_run, tmp_path / "vaegan.safetensors")
    with safe_open(path, framework="pt") as f:
        keys, metadata = set(f.keys()), f.metadata()
    assert not any(k.startswith(("nets.dis.", "nets.enc.logvar.")) for k in keys)  # training's only
    assert {"noise", "directions.PC1", "directions.PC5"} <= keys and metadata["model"] == "vaegan"
    published, info = pretrained.load(path)
    trained, o = load_nets(vaegan_run)  # the averaged weights, as figures use them
    assert info["settings"]["latent"] == o["latent"] and not hasattr(published, "dis")
    torch.testing.assert_close(info["noise"], D.fixed_noise(o["latent"], pretrained.N_NOISE))
    faces = torch.from_numpy(D.synthetic_images(8, seed=3))
    for a, b in ((published.decode(info["noise"]), trained.decode(info["noise"])),
                 (published.decode(published.encode(faces)), trained.decode(trained.encode(faces)))):
        assert (a.int() - b.int()).abs().float().mean() < 1.0  # float16 weights: the same images, to a level or so
    with pytest.raises(LabkitError, match="hold the posterior mean only"):
        published.enc(D.to_float(faces))


def test_a_gan_publishes_its_generator_alone(tmp_path):
    run = training_loop(tmp_path / "gan", model="gan", profile="smoke", epochs=1, batch=16, limit=32, progress=False,
                        **TINY)
    nets, info = pretrained.load(pretrained.export(run, tmp_path / "gan.safetensors"))
    assert [n for n, _ in nets.named_children()] == ["dec"] and info["directions"] == {}


def test_loading_something_else_is_one_clear_line(tmp_path):
    with pytest.raises(LabkitError, match="unknown model 'dcgan'"):
        pretrained.load("dcgan")
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(LabkitError, match="not a safetensors file"):
        pretrained.load(bad)


@pytest.mark.skipif(not PUBLISHED, reason="no published weights in figures/cpu/weights")
def test_the_published_weights_are_every_model_of_the_committed_comparison():
    metrics = json.loads((RESULTS / "metrics.json").read_text())
    assert PUBLISHED == sorted(metrics["runs"]) == sorted(MODELS)
    assert sum(p.stat().st_size for p in pretrained.PUBLISHED.iterdir()) < 25 * 2**20


@pytest.mark.skipif(not PUBLISHED, reason="no published weights in figures/cpu/weights")
def test_the_published_weights_draw_the_committed_samples_figure(tmp_path):
    nets, infos = {}, {}
    for m in MODELS:
        nets[m], infos[m] = pretrained.load(m)
    plots.samples(nets, infos["vaegan"]["noise"], tmp_path / "samples.png")
    drawn, committed = (np.asarray(Image.open(p).convert("RGB"), dtype=float)
                        for p in (tmp_path / "samples.png", RESULTS / "samples.png"))
    assert drawn.shape == committed.shape
    # float16 weights move a pixel by a level or two here and there (measured: docs/weights.md)
    assert np.abs(drawn - committed).mean() < 0.5 and (np.abs(drawn - committed) > 24).mean() < 1e-3


@pytest.mark.skipif(not PUBLISHED or shared_data() is None, reason="needs the published weights and CelebA")
def test_the_published_weights_reproduce_the_published_reconstruction_error():
    metrics = json.loads((RESULTS / "metrics.json").read_text())
    faces, _ = D.holdout_set(shared_data(), metrics["protocol"]["reference_count"])
    for m, run in metrics["runs"].items():
        if "mse" in run:
            nets, _ = pretrained.load(m)
            mse, _ = recon_errors(faces, nets.decode(nets.encode(faces)))
            assert mse == pytest.approx(run["mse"], rel=0.01), m


@pytest.mark.skipif("vaegan" not in PUBLISHED, reason="no published VAE-GAN")
def test_sample_pretrained_writes_a_grid_of_trained_faces(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["sample", "--pretrained", "vaegan", "--n", "16", "--nrow", "4", "--out", str(out)]) == 0
    with Image.open(out) as grid:
        assert grid.size == (4 * 66 + 2, 4 * 66 + 2)
        assert np.asarray(grid).std() > 20  # faces, not a flat field
    assert main(["sample"]) == 2 and "give a run folder or --pretrained" in capsys.readouterr().err
