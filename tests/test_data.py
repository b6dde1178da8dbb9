import io
import zipfile

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from labkit import LabkitError, data as D
from labkit.__main__ import main

from conftest import shared_data, write_h5


def test_handout_dataloader_snippet_runs_unchanged(celeba_like, capsys):
    import torchvision.transforms as transforms

    from labkit.data import CelebADataset
    batch_size = 64
    T = transforms.Compose([transforms.ToTensor(),
                            transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), ])
    train_loader = torch.utils.data.DataLoader(
        CelebADataset(str(celeba_like), transform=T),
        batch_size=batch_size, shuffle=True, num_workers=1)
    x, label = next(iter(train_loader))
    assert x.shape == (64, 3, 64, 64) and x.dtype == torch.float32 and (label == 0).all()
    assert -1 <= x.min() < -0.5 and 0.5 < x.max() <= 1
    assert "key list: ['images']" in capsys.readouterr().out


def test_fast_path_equals_the_handout_transform(celeba_like):
    import torchvision.transforms as transforms
    T = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)])
    item, _ = D.CelebADataset(str(celeba_like), transform=T)[5]
    fast = D.to_float(D.load_images(celeba_like)[5:6])[0]
    torch.testing.assert_close(fast, item, atol=1e-6, rtol=0)


def test_epoch_order_is_a_permutation_fixed_by_seed_and_epoch():
    a = D.epoch_order(100, 3, seed=0)
    assert sorted(a.tolist()) == list(range(100))
    assert torch.equal(a, D.epoch_order(100, 3, seed=0))
    assert not torch.equal(a, D.epoch_order(100, 4, seed=0))


def test_uint8_round_trip():
    u8 = torch.from_numpy(D.synthetic_images(4))
    assert torch.equal(D.to_uint8(D.to_float(u8)), u8)


def make_zip(path, n, size=(178, 218)):
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(1, n + 1):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), np.uint8)).save(buf, "JPEG")
            zf.writestr(f"img_align_celeba/{i:06d}.jpg", buf.getvalue())
    return path


def test_prepare_splits_by_id_and_crops(tmp_path):
    src = make_zip(tmp_path / "celeba.zip", 6)
    assert D.prepare(src, tmp_path / "out", holdout=2, progress=False) == (4, 2)
    with h5py.File(tmp_path / "out" / D.TRAIN_FILE) as f:
        train = f["images"][:]
    with h5py.File(tmp_path / "out" / D.HOLDOUT_FILE) as f:
        hold = f["images"][:]
    assert train.shape == (4, 3, 64, 64) and hold.shape == (2, 3, 64, 64) and train.dtype == np.uint8
    with zipfile.ZipFile(src) as zf:
        np.testing.assert_array_equal(hold[1], D.crop_resize(zf.read("img_align_celeba/000006.jpg")))
    # The result is exactly what the handout's loader accepts.
    assert len(D.CelebADataset(str(tmp_path / "out" / D.TRAIN_FILE))) == 4


def test_prepare_with_partition_file(tmp_path):
    folder = tmp_path / "img_align_celeba"
    folder.mkdir()
    with zipfile.ZipFile(make_zip(tmp_path / "z.zip", 5)) as zf:
        zf.extractall(tmp_path)
    (tmp_path / "part.txt").write_text("".join(f"{i:06d}.jpg {p}\n" for i, p in zip(range(1, 6), [0, 1, 0, 2, 2])))
    assert D.prepare(folder, tmp_path / "out", partition=tmp_path / "part.txt", progress=False) == (3, 2)


def test_prepare_reproduces_the_shared_celeba_files(tmp_path):
    data = shared_data()
    if data is None:
        pytest.skip("LABKIT_DATA does not point at the shared CelebA")
    D.prepare(data.parent / "img_align_celeba_halfres_10k.zip", tmp_path, holdout=0, limit=48, progress=False)
    with h5py.File(tmp_path / D.TRAIN_FILE) as mine, h5py.File(data) as theirs:
        np.testing.assert_array_equal(mine["images"][:], theirs["images"][:48])


def test_shared_celeba_loads_and_validates():
    data = shared_data()
    if data is None:
        pytest.skip("LABKIT_DATA does not point at the shared CelebA")
    assert D.validate_h5(data) == 8000
    assert D.validate_h5(D.holdout_path(data)) == 2000


def bad_files(tmp_path):
    good = D.synthetic_images(4)
    (tmp_path / "notes.txt").write_text("not images")
    with h5py.File(tmp_path / "nothing.h5", "w"):
        pass
    with h5py.File(tmp_path / "group.h5", "w") as f:
        f.create_group("images")
    write_h5(tmp_path / "truncated.h5", D.synthetic_images(64))
    blob = (tmp_path / "truncated.h5").read_bytes()
    (tmp_path / "truncated.h5").write_bytes(blob[: len(blob) // 2])
    return {
        "missing.h5": "no such file",
        "notes.txt": "not an HDF5 file",
        "nothing.h5": "holds no dataset",
        "group.h5": "is a group",
        "empty.h5": (write_h5(tmp_path / "empty.h5", np.zeros((0, 3, 64, 64), np.uint8)), "empty")[1],
        "float.h5": (write_h5(tmp_path / "float.h5", good.astype(np.float32) / 255), "dtype is float32")[1],
        "hwc.h5": (write_h5(tmp_path / "hwc.h5", good.transpose(0, 2, 3, 1).copy()), "channels last")[1],
        "small.h5": (write_h5(tmp_path / "small.h5", good[:, :, :32, :32].copy()), r"\(3, 32, 32\)")[1],
        "black.h5": (write_h5(tmp_path / "black.h5", np.zeros_like(good)), "all zero")[1],
        "truncated.h5": "truncated or corrupt",
    }


def test_each_bad_input_gives_its_clear_error(tmp_path):
    for name, message in bad_files(tmp_path).items():
        with pytest.raises(LabkitError, match=message):
            D.load_images(tmp_path / name)


def test_bad_input_through_the_cli_is_one_line(tmp_path, capsys):
    for name in bad_files(tmp_path):
        code = main(["train", "--model", "vae", "--profile", "smoke", "--run-dir", str(tmp_path / "run"),
                     "--data", str(tmp_path / name)])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, (name, err)


def test_celeba_without_its_held_out_file_is_an_error_not_cartoon_faces(celeba_like, two_runs):
    from labkit.metrics import evaluate

    from conftest import tiny_extractor
    (celeba_like.parent / D.HOLDOUT_FILE).unlink()  # an interrupted prepare
    with pytest.raises(LabkitError, match="celeba64_holdout.h5: no such file: figures and evaluation need"):
        D.holdout_set(celeba_like)
    with pytest.raises(LabkitError, match="celeba64_holdout.h5: no such file"):
        evaluate([two_runs / "vae"], data=celeba_like, n=8, extractor=tiny_extractor())
    assert D.holdout_set(None, 3)[1] == "synthetic faces (seed 7)"  # without CelebA, cartoons stand in, and say so
