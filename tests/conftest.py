import json
import math
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from labkit import data as D
from labkit.runs import Run

TINY = dict(width=1 / 16, latent=16)  # channels 4/8/16: milliseconds per step on a CPU


def make(model="vaegan", seed=0, **kw):
    """A model's networks at the TINY size, the same weights for the same seed."""
    from labkit.models import Nets
    torch.manual_seed(seed)
    return Nets(model, **TINY, **kw)


def batch(n=8, seed=0):
    """n random images in [-1, 1]."""
    return torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def forward(nets, x, seed=1, **settings):
    """compute_losses with the handout's settings (the options table's defaults) but these."""
    from labkit.models import compute_losses
    from labkit.options import OPTIONS
    defaults = {k: o.default for k, o in OPTIONS.items()}
    return compute_losses(nets, x, torch.Generator().manual_seed(seed), dict(defaults, **settings))


# Read once, then hidden from the code under test (and its subprocesses) for the whole session,
# so that every fixture, whatever its scope, trains on the data its test names.
_SHARED = D.resolve_data(os.environ.pop("LABKIT_DATA", None))


def shared_data():
    """The real celeba64.h5 when LABKIT_DATA points at it (CI sets it), else None."""
    return _SHARED if _SHARED is not None and _SHARED.is_file() else None


def loss_rows(run):
    """stats.jsonl without its wall-clock field: what two equivalent runs must share exactly."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in Run(run).stats()]


def write_h5(path, images, key="images"):
    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=images)
    return Path(path)


def figures():
    """What the report pipeline writes into its figures folder (attributes.png too, with CelebA's
    attributes)."""
    return {"data_faces.png", "reconstructions.png", "samples.png", "loss_curves.png", "diagnostics.png",
            "interpolation.png", "zoom_recon_eyes.png", "zoom_recon_hair.png", "zoom_samples.png", "learned_metric.png",
            "demo_directions.png"}


def tiny_extractor():
    """A fixed random conv net standing in for Inception: no weights needed."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 5, 2), nn.ReLU(), nn.Conv2d(16, 32, 5, 2), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(2), nn.Flatten()).eval()
    return lambda images: net(images.float() / 127.5 - 1)


def assert_results_consistent(folder, pdf, sizes, settings):
    """A results folder agrees with itself: metrics.json measured with `sizes` (see
    labkit.options.evaluation) on runs trained with `settings`, every model and figure present,
    and the report `pdf` printing the JSON's numbers."""
    from labkit.metrics import ROWS, SETS
    from labkit.models import MODELS
    from labkit.options import options
    metrics = json.loads((folder / "metrics.json").read_text())
    p, runs = metrics["protocol"], metrics["runs"]
    assert p["generated_count"] == sizes["eval_n"]
    # The floor compares as many training faces as generated images, or all there are, and says so.
    capped = p["floor_count"] < sizes["eval_n"] and "all the training" in p["floor"]
    assert p["floor_count"] == sizes["eval_n"] or capped
    assert p["reference_count"] == (sizes["n_ref"] or p["reference_count"])
    assert p["sets"] == list(sizes["eval_sets"] or SETS)
    assert set(runs) == set(MODELS)
    for name, run in runs.items():
        assert run["model"] == name
        expected = options(model=name, **settings)
        assert run["options"] == {k: expected[k] for k in run["options"]}, name
        assert all(math.isfinite(v) for v in run.values() if isinstance(v, float)), name
    assert figures() <= {f.name for f in folder.glob("*.png")}
    text = pdf_text(pdf)
    written = {key: fmt for _, key, _, fmt, _ in ROWS}  # as the report's metrics table writes them
    for name, run in runs.items():
        for key in ("fid_prior", "fid_recon", "sharpness_prior"):
            if key in run:
                assert f"{run[key]:{written[key]}}" in text, (name, key)
    assert f"{p['floor_fid']:{written['fid_prior']}}" in text
    ablation = folder / "ablation.json"
    if ablation.is_file():  # the discussion's table prints every row's FIDs as written by ablation.markdown
        for name, row in json.loads(ablation.read_text())["runs"].items():
            assert f"{row['fid_prior']:.1f}" in text and f"{row['fid_recon']:.1f}" in text, name
    table = folder / "conditional.json"
    if table.is_file():  # the paper's table: every conditional model, its figure, its numbers in the report
        from labkit.conditional import CEILING, FLOOR
        from labkit.models import CONDITIONAL
        result = json.loads(table.read_text())
        assert list(result["rows"]) == [*(s.title for s in CONDITIONAL.values()), CEILING, FLOOR]
        assert len(result["protocol"]["seeds"]) >= 2 and (folder / "conditional.png").is_file()
        for name, row in result["rows"].items():
            assert f"{row['cosine']:.3f}" in text and f"{row['mse']:.3f}" in text, name


def pdf_text(path):
    """The PDF's text (pdftotext when installed, else pypdf)."""
    if shutil.which("pdftotext"):
        return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True,
                              check=True).stdout
    from pypdf import PdfReader
    return "\n".join(page.extract_text() or "" for page in PdfReader(path).pages)


# The browser tests need Chromium (Debian's `chromium`; `make test` installs it when it runs as root)
# and the `playwright` package, which drives it (no browser download); LABKIT_SCREENSHOTS=DIR keeps
# their screenshots. Chromium runs as root in a sandbox-less container, on a machine without internet.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
IN_A_BROWSER = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine "
                                                     "(Debian: apt-get install chromium)")]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(server, ready, what, value, seconds=120):
    """A fixture's body (`yield from`): yields `value` once `ready()` stops raising OSError (the
    server answers), and stops the server after; fails with the server's last words if it exits or
    takes longer than `seconds`."""
    deadline = time.time() + seconds
    while True:
        try:
            ready()
            break
        except OSError:
            if server.poll() is not None or time.time() > deadline:
                server.kill()
                pytest.fail(f"{what} did not start: {server.stderr.read().decode()[-1500:]}")
            time.sleep(0.5)
    yield value
    os.killpg(server.pid, 15)
    server.wait(timeout=30)


def drag(page, slider, dx):
    """Drag the handle of the ipywidgets slider labelled `slider` by dx pixels, as a mouse would."""
    handle = page.locator(".widget-slider", has_text=slider).locator(".noUi-handle").first
    box = handle.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + dx, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()


def shows_a_change(page, image, action, screenshot):
    """Whether the image's source changes within a minute of `action` (the kernel decodes the face
    and sends it back, slowly on a loaded CI machine); the page is kept as `screenshot`."""
    before = image.get_attribute("src")
    action()
    for _ in range(600):
        if image.get_attribute("src") != before:
            page.screenshot(path=screenshot)
            return True
        time.sleep(0.1)
    page.screenshot(path=screenshot.with_name(screenshot.stem + "-unchanged.png"))
    return False


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A minute-old VAE and GAN (runs/vae, runs/gan) trained on 64 synthetic faces."""
    from labkit.train import training_loop
    root = tmp_path_factory.mktemp("runs")
    for model in ("vae", "gan"):
        training_loop(root / model, model=model, profile="smoke", epochs=1, batch=16, limit=64, progress=False, **TINY)
    return root


@pytest.fixture
def celeba_like(tmp_path):
    """A small CelebA-shaped training + holdout pair made of synthetic faces."""
    write_h5(tmp_path / D.TRAIN_FILE, D.synthetic_images(96, seed=3))
    write_h5(tmp_path / D.HOLDOUT_FILE, D.synthetic_images(64, seed=4))
    return tmp_path / D.TRAIN_FILE


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def attribute_file(path, rows, names):
    lines = [str(len(rows)), " ".join(names)]
    lines += [f"{i + 1:06d}.jpg " + " ".join(f"{v:2d}" for v in row) for i, row in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def faces_with_attributes(tmp_path):
    """Synthetic faces whose 'Bright' attribute is their brightness (readable off the face), whose
    'Coin' is a coin toss (not readable) and whose 'Rare' is on 2% of them; held out after trained,
    as prepare writes them."""
    images = D.synthetic_images(800, seed=5)
    bright = images.reshape(len(images), -1).mean(1)
    rng = np.random.default_rng(0)
    rows = np.stack([np.where(bright > np.median(bright), 1, -1), rng.choice([-1, 1], len(images)),
                     np.where(rng.random(len(images)) < 0.02, 1, -1)], 1)
    write_h5(tmp_path / D.TRAIN_FILE, images[:600])
    write_h5(tmp_path / D.HOLDOUT_FILE, images[600:])
    attribute_file(tmp_path / "list_attr_celeba.txt", rows, ["Bright", "Coin", "Rare"])
    return tmp_path
