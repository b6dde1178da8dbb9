"""CelebA 64x64 in HDF5: the handout's dataset class, validation, the fast path, `prepare`."""
import contextlib
import io
import os
import zipfile
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from labkit import LabkitError

TRAIN_FILE, HOLDOUT_FILE = "celeba64.h5", "celeba64_holdout.h5"
SYNTHETIC_TRAIN, SYNTHETIC_HOLDOUT = 4096, 2000  # stand-in faces without CelebA (unless limited)
GRID_SEED = 1234  # fixed noise and fixed faces: every model's figures show the same inputs
# The VAE-GAN authors' crop of the 178x218 aligned image: columns 15-163, rows 40-188.
CROP, ALIGNED_SIZE = (15, 40, 163, 188), (178, 218)
GET_CELEBA = ("no CelebA found: set LABKIT_DATA (or --data) to a folder holding celeba64.h5, or build "
              "one with `python -m labkit prepare img_align_celeba.zip --out DIR` from the official "
              "aligned images (https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html)")


class CelebADataset(Dataset):
    """The handout's loader, unchanged in behaviour: works with its DataLoader snippet as is."""

    def __init__(self, h5_path, transform=None):
        validate_h5(h5_path)
        self.h5_path = h5_path
        self.transform = transform
        f = h5py.File(self.h5_path, "r")
        key = list(f.keys())
        print("key list:", key)
        self.dataset = f[key[0]]
        print("dataset loaded and its shape:", self.dataset.shape)

    def __getitem__(self, index):
        img = self.dataset[index]
        img = np.transpose(img, (1, 2, 0))
        if self.transform is not None:
            img = self.transform(img)
        return img, 0

    def __len__(self):
        return len(self.dataset)


def validate_h5(path):
    """Check an image file before any work starts; raise LabkitError with one line per problem."""
    path = Path(path)
    if not path.is_file():
        raise LabkitError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise LabkitError(f"{path}: not an HDF5 file")
    try:
        with h5py.File(path, "r") as f:
            keys = list(f.keys())
            if not keys:
                raise LabkitError(f"{path}: holds no dataset")
            ds = f[keys[0]]
            if not isinstance(ds, h5py.Dataset):
                raise LabkitError(f"{path}: first entry {keys[0]!r} is a group, not an image dataset")
            problems = _shape_problems(ds.shape, ds.dtype)
            if problems:
                raise LabkitError(f"{path}: " + "; ".join(problems))
            # Reading both ends touches the first and last chunks: a truncated file fails here.
            ends = np.stack([ds[0], ds[-1]])
    except LabkitError:
        raise
    except (OSError, KeyError, ValueError) as e:
        raise LabkitError(f"{path}: cannot be read, truncated or corrupt ({e})") from None
    if ends.max() == 0:
        raise LabkitError(f"{path}: images are all zero (black)")
    return ds.shape[0]


def _shape_problems(shape, dtype):
    problems = []
    if len(shape) != 4:
        problems.append(f"images have shape {shape}, expected (N, 3, 64, 64)")
    elif shape[0] == 0:
        problems.append("the dataset is empty (0 images)")
    elif shape[1:] != (3, 64, 64):
        hint = " (channels last: store NCHW)" if shape[-1] == 3 else ""
        problems.append(f"images have shape {shape[1:]}{hint}, expected (3, 64, 64)")
    if dtype != np.uint8:
        problems.append(f"dtype is {dtype}, expected uint8 (0-255)")
    return problems


def resolve_data(data=None):
    """The training file from --data / LABKIT_DATA (a file or a folder holding celeba64.h5)."""
    data = data or os.environ.get("LABKIT_DATA")
    if not data:
        return None
    path = Path(data)
    if path.is_dir():
        path = path / TRAIN_FILE
    return path


def holdout_path(train_path):
    """The held-out file beside a training file, or None (then evaluation uses synthetic data)."""
    if train_path is None:
        return None
    path = Path(train_path).with_name(HOLDOUT_FILE)
    return path if path.is_file() else None


def training_set(data=None, limit=None, device="cpu"):
    """(uint8 training images on `device`, a line saying what they are): CelebA's training file
    from --data / LABKIT_DATA, else synthetic faces. The one place that falls back."""
    path = resolve_data(data)
    if path is None:
        images = torch.from_numpy(synthetic_images(limit or SYNTHETIC_TRAIN, seed=0)).to(device)
        return images, f"synthetic faces ({len(images)} images; no CelebA found)"
    images = load_images(path, device, limit)
    return images, f"{path} ({len(images):,} images)"


def holdout_set(data=None, limit=None):
    """(uint8 held-out images, where they come from): the file beside the training data, or
    synthetic faces of another seed when there is no CelebA. CelebA without its held-out file is
    an error: scoring real models against cartoons would say nothing."""
    train = resolve_data(data)
    if train is None:
        return torch.from_numpy(synthetic_images(limit or SYNTHETIC_HOLDOUT, seed=7)), "synthetic faces (seed 7)"
    path = holdout_path(train)
    if path is None:
        raise LabkitError(f"{train.with_name(HOLDOUT_FILE)}: no such file: figures and evaluation need the held-out "
                          f"faces beside {train.name} (python -m labkit prepare writes both; check that it finished "
                          "and that --partition's names match the images)")
    return load_images(path, limit=limit), str(path)


def grid_faces(train_path, n=64):
    """The fixed faces every figure reconstructs: the first held-out ones (never trained on)
    when a held-out file exists, else the first training ones, else synthetic (seed 1)."""
    if train_path is None:
        return torch.from_numpy(synthetic_images(n, seed=1))
    return load_images(holdout_path(train_path) or train_path, limit=n)


def fixed_noise(latent, n=64):
    """The noise every sample figure decodes."""
    return torch.randn(n, latent, generator=torch.Generator().manual_seed(GRID_SEED))


def attributes(data=None):
    """CelebA's attributes for the training images, (names, int8 rows of +-1 in id order), from
    the list_attr_celeba*.txt beside the data; None without one (synthetic faces have none)."""
    path = resolve_data(data)
    found = sorted(path.parent.glob("list_attr_celeba*.txt")) if path is not None else []
    if not found:
        return None
    lines = found[0].read_text().splitlines()
    try:
        names = lines[1].split()
        rows = np.array([[int(v) for v in line.split()[1:]] for line in lines[2:] if line.strip()], np.int8)
    except (IndexError, ValueError):
        raise LabkitError(f"{found[0]}: not in list_attr_celeba format (count line, names line, rows)") from None
    if rows.shape[1] != len(names):
        raise LabkitError(f"{found[0]}: {rows.shape[1]} values per row for {len(names)} attribute names")
    return names, rows


def attribute_split(data=None):
    """(names, the training faces' attributes, the held-out faces'): CelebA's rows as float tensors
    of +-1, split as prepare splits the faces by id (training first, then held out); None without
    an attribute file."""
    found = attributes(data)
    if found is None:
        return None
    names, rows = found
    train = resolve_data(data)
    n_train = validate_h5(train)
    n_held = validate_h5(holdout_path(train)) if holdout_path(train) else 0
    if len(rows) < n_train + n_held:
        raise LabkitError(f"{len(rows):,} attribute rows for {n_train:,} training and {n_held:,} held-out faces: the "
                          "attribute file does not cover the data")
    y = torch.from_numpy(rows).float()
    return names, y[:n_train], y[n_train:n_train + n_held]


def load_images(path, device="cpu", limit=None):
    """The whole uint8 array (N, 3, 64, 64) as a tensor on `device`: the training fast path."""
    n = validate_h5(path)
    n = n if limit is None else min(n, limit)
    need, free = n * 3 * 64 * 64, available_memory()
    if need > 0.8 * free:
        raise LabkitError(f"{path}: {n:,} images need {need / 2**30:.1f} GiB, more than this machine has free "
                          f"({free / 2**30:.1f} GiB): use --limit")
    try:
        with h5py.File(path, "r") as f:
            array = f[list(f.keys())[0]][:n]
    except OSError as e:
        raise LabkitError(f"{path}: cannot be read, truncated or corrupt ({e})") from None
    return torch.from_numpy(array).to(device)


def available_memory():
    """Bytes a new allocation can get: MemAvailable (free pages plus the page cache the kernel
    can drop), not MemFree, which a machine that has read files for a while keeps small."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def synthetic_images(n=2048, seed=0):
    """Face-like cartoons (skin ellipse, eyes, mouth, hair, coloured background), uint8 NCHW.

    Stands in for CelebA on a machine without it, so that every part of the pipeline runs.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32) / 63.0

    def draw(img, mask, colour):
        img[mask] = colour

    out = np.empty((n, 64, 64, 3), np.uint8)
    for i in range(n):
        top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        img = (top * (1 - yy[..., None]) + bottom * yy[..., None]).astype(np.float32)
        cx, cy = 0.5 + rng.normal(0, 0.04), 0.55 + rng.normal(0, 0.03)
        rx, ry = rng.uniform(0.24, 0.32), rng.uniform(0.32, 0.40)
        face = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        hair = (((xx - cx) / (rx * 1.15)) ** 2 + ((yy - cy + 0.08) / (ry * 1.05)) ** 2 <= 1) & (yy < cy - ry * 0.35)
        draw(img, face, rng.uniform([150, 100, 70], [255, 210, 180]))
        draw(img, hair, rng.uniform(0, 120, 3))
        for side in (-1, 1):
            eye = ((xx - cx - side * rx * 0.4) / 0.045) ** 2 + ((yy - cy + ry * 0.15) / 0.03) ** 2 <= 1
            draw(img, eye, rng.uniform(0, 60, 3))
        smile = rng.uniform(0.01, 0.05)
        curve = cy + ry * 0.45 + smile * np.cos((xx - cx) / rx * 3)
        mouth = (np.abs(xx - cx) < rx * 0.45) & (np.abs(yy - curve) < 0.02)
        draw(img, mouth, rng.uniform([120, 20, 30], [220, 80, 90]))
        out[i] = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    return out.transpose(0, 3, 1, 2).copy()


def to_float(images_u8):
    """uint8 [0, 255] -> float [-1, 1], the handout's ToTensor + Normalize(0.5, 0.5)."""
    return images_u8.float().div_(127.5).sub_(1.0)


def to_uint8(images):
    return images.detach().float().add(1.0).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)


def epoch_order(n, epoch, seed):
    """The shuffled index order of one epoch: a pure function of (seed, epoch), so any step of
    any epoch can be resumed without saved loader state."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


# ----------------------------------------------------------------------------------------------
# prepare: img_align_celeba (folder or zip) -> the handout's HDF5 files

@contextlib.contextmanager
def _sources(src):
    """(file name, read) for each JPEG of a folder or a zip, sorted by name."""
    src = Path(src)
    if not src.exists():
        raise LabkitError(f"{src}: no such file or folder")
    if src.is_dir():
        yield [(p.name, p.read_bytes) for p in sorted(src.rglob("*.jpg"))]
        return
    if not zipfile.is_zipfile(src):
        raise LabkitError(f"{src}: neither a folder nor a zip of img_align_celeba JPEGs")
    with zipfile.ZipFile(src) as zf:
        names = sorted(n for n in zf.namelist() if n.lower().endswith(".jpg"))
        yield [(Path(n).name, lambda n=n: zf.read(n)) for n in names]


def crop_resize(jpeg_bytes):
    """The authors' 148x148 crop, scaled to the source's resolution, LANCZOS to 64x64 (CHW)."""
    from PIL import Image
    img = Image.open(io.BytesIO(jpeg_bytes)).convert("RGB")
    sx, sy = img.width / ALIGNED_SIZE[0], img.height / ALIGNED_SIZE[1]
    box = (CROP[0] * sx, CROP[1] * sy, CROP[2] * sx, CROP[3] * sy)
    return np.asarray(img.resize((64, 64), Image.LANCZOS, box=box)).transpose(2, 0, 1)


def write_images_h5(path, images):
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, chunks=(1, 3, 64, 64), compression="gzip", compression_opts=9)


def prepare(src, out, holdout=2000, partition=None, limit=None, progress=True):
    """Build celeba64.h5 and celeba64_holdout.h5 in `out` from the aligned CelebA JPEGs.

    The split is by CelebA id: the last `holdout` ids are held out, or, with `partition`
    (list_eval_partition.txt), train+val are for training and test is held out, as the authors.
    """
    from tqdm import tqdm
    with _sources(src) as sources:
        sources = sources[:limit]
        if not sources:
            raise LabkitError(f"{src}: holds no .jpg images")
        if partition:
            split = dict(line.split() for line in Path(partition).read_text().split("\n") if line.strip())
            is_holdout = [split.get(name) == "2" for name, _ in sources]
        else:
            if not 0 <= holdout < len(sources):
                raise LabkitError(f"--holdout {holdout} must be between 0 and {len(sources) - 1} images")
            is_holdout = [i >= len(sources) - holdout for i in range(len(sources))]
        images = np.empty((len(sources), 3, 64, 64), np.uint8)
        bar = tqdm(sources, desc="crop+resize", unit="img", disable=not progress, mininterval=2)
        for i, (_, read) in enumerate(bar):
            images[i] = crop_resize(read())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mask = np.array(is_holdout)
    write_images_h5(out / TRAIN_FILE, images[~mask])
    if mask.any():
        write_images_h5(out / HOLDOUT_FILE, images[mask])
    return int((~mask).sum()), int(mask.sum())
