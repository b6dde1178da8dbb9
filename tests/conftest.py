import os
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from labkit import data as D
from labkit.runs import Run

TINY = dict(width=1 / 16, latent=16)  # channels 4/8/16: milliseconds per step on a CPU


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


def pdf_text(path):
    """The PDF's text (pdftotext when installed, else pypdf)."""
    if shutil.which("pdftotext"):
        return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout
    from pypdf import PdfReader
    return "\n".join(page.extract_text() or "" for page in PdfReader(path).pages)


@pytest.fixture
def celeba_like(tmp_path):
    """A small CelebA-shaped training + holdout pair made of synthetic faces."""
    write_h5(tmp_path / D.TRAIN_FILE, D.synthetic_images(96, seed=3))
    write_h5(tmp_path / D.HOLDOUT_FILE, D.synthetic_images(64, seed=4))
    return tmp_path / D.TRAIN_FILE


@pytest.fixture
def rng():
    return np.random.default_rng(0)
