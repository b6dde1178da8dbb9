"""The authors' jitter: whole-pixel moves and their colour powers, drawn from the run's generator."""
import pytest
import torch

from labkit import augment as A, data as D


def faces(n):
    return D.to_float(torch.from_numpy(D.synthetic_images(n, seed=3)))


def jitter(x, seed=0, shard=(0, 1)):
    return A.augment(x, torch.Generator().manual_seed(seed), shard)


def test_hsv_round_trip_and_known_colours():
    x = torch.rand(4, 3, 8, 8)
    torch.testing.assert_close(A.hsv_to_rgb(A.rgb_to_hsv(x)), x, atol=1e-5, rtol=0)
    # red, green, blue, grey, magenta as one column of five pixels
    rgb = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.5], [1, 0, 1]]).T.reshape(1, 3, 5, 1)
    h, s, v = A.rgb_to_hsv(rgb)[0, :, :, 0]
    torch.testing.assert_close(h, torch.tensor([0, 1 / 3, 2 / 3, 0, 5 / 6]))
    torch.testing.assert_close(s, torch.tensor([1.0, 1, 1, 0, 1]))
    torch.testing.assert_close(v, torch.tensor([1.0, 1, 1, 0.5, 1]))


def test_without_colour_jitter_faces_move_by_whole_pixels(monkeypatch):
    for name in ("GAMMA", "CONTRAST", "HUE"):
        monkeypatch.setattr(A, name, 0.0)
    x = faces(64)
    y = jitter(x)
    inner = (slice(None), slice(4, -4), slice(4, -4))  # away from the replicated border
    moves = []
    for a, b in zip(x, y):
        moves.append([(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)
                      if torch.allclose(b[inner], a.roll((dy, dx), (1, 2))[inner], atol=1e-5)])
    assert all(moves), "a face came back not as a whole-pixel move of itself"
    # sigma 0.86 px: about four faces in five move, by at most a few pixels
    assert 40 <= sum((0, 0) not in m for m in moves) < 64


def test_colour_jitter_is_mild_and_keeps_grey_grey(monkeypatch):
    monkeypatch.setattr(A, "TRANSLATION", 0.0)
    x = faces(64)
    y = jitter(x)
    assert y.shape == x.shape and y.dtype == x.dtype and y.min() >= -1 and y.max() <= 1
    change = (y - x).abs().mean((1, 2, 3))
    assert (change > 0).all() and change.mean() < 0.1
    grey = x.mean(1, keepdim=True).expand_as(x).contiguous()
    out = jitter(grey)
    torch.testing.assert_close(out[:, 0], out[:, 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, 1], out[:, 2], atol=1e-5, rtol=0)


def test_the_same_generator_state_jitters_alike_on_one_or_two_processes():
    x = faces(16)
    one = jitter(x, seed=5)
    assert torch.equal(one, jitter(x, seed=5)) and not torch.equal(one, jitter(x, seed=6))
    two = torch.cat([jitter(x[r * 8:(r + 1) * 8], seed=5, shard=(r, 2)) for r in (0, 1)])
    assert torch.equal(one, two)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_jitter_never_waits_for_the_gpu():
    x, g = faces(16).cuda(), torch.Generator("cuda").manual_seed(0)
    torch.cuda.set_sync_debug_mode("error")  # a host sync in a training step raises here
    try:
        A.augment(x, g)
    finally:
        torch.cuda.set_sync_debug_mode(0)
