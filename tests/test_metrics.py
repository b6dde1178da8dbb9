import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from labkit import data as D, metrics as M
from labkit.__main__ import main
from labkit.runs import Run

from conftest import tiny_extractor


def faces(n, seed):
    return torch.from_numpy(D.synthetic_images(n, seed=seed))


def blur(images, k=5):
    x = images.float()
    x = nn.functional.avg_pool2d(x, k, 1, k // 2, count_include_pad=False)
    return x.round().clamp(0, 255).to(torch.uint8)


def test_fid_is_zero_on_identical_sets_and_grows_with_damage():
    ext, real = tiny_extractor(), faces(300, 1)
    fr = M.features(ext, real)
    assert abs(M.fid(fr, fr)) < 1e-6
    other = M.features(ext, faces(300, 2))  # same distribution, other draws
    noisy = M.features(ext, (real.float() + torch.randn(real.shape) * 40).clamp(0, 255).to(torch.uint8))
    blurred = M.features(ext, blur(real, 7))
    assert M.fid(fr, other) < M.fid(fr, blurred) and M.fid(fr, other) < M.fid(fr, noisy)
    very_noisy = M.features(ext, (real.float() + torch.randn(real.shape) * 90).clamp(0, 255).to(torch.uint8))
    assert M.fid(fr, noisy) < M.fid(fr, very_noisy)


def test_kid_sign_and_scale():
    ext = tiny_extractor()
    a, b = M.features(ext, faces(300, 1)), M.features(ext, faces(300, 2))
    same, _ = M.kid(a, b, subsets=20)
    far, _ = M.kid(a, M.features(ext, blur(faces(300, 1), 9)), subsets=20)
    assert abs(same) < far and far > 0  # unbiased: near 0 (either sign) for one distribution


def test_sharpness_and_reconstruction_errors():
    real = faces(16, 1)
    assert M.sharpness(blur(real)) < 0.5 * M.sharpness(real)
    mse, ssim = M.recon_errors(real, real)
    assert mse == 0 and ssim == pytest.approx(1.0)
    mse, ssim = M.recon_errors(real, blur(real))
    assert mse > 0 and ssim < 0.95


def test_expost_gaussian_matches_the_fitted_moments():
    mu = torch.randn(4000, 3) @ torch.tensor([[2.0, 0, 0], [0.5, 1, 0], [0, 0, 0.1]]) + 3
    z = M.expost_gaussian(mu, 20000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(z.mean(0), mu.mean(0), atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(z.T), torch.cov(mu.T), atol=0.08, rtol=0.05)


def test_evaluate_writes_the_protocol_every_metric_and_the_floor(two_runs, tmp_path):
    out = tmp_path / "m.json"
    M.evaluate([two_runs / "vae", two_runs / "gan"], n=120, out=out, extractor=tiny_extractor(), n_ref=150)
    r = json.loads(out.read_text())
    p = r["protocol"]
    assert (p["generated_count"], p["reference_count"], p["floor_count"], p["expost_fit_count"]) == (120, 150, 120, 120)
    assert {"reference", "weights", "seed", "commit", "torch", "device", "seconds", "sharpness_real"} <= set(p)
    vae, gan = r["runs"]["vae"], r["runs"]["gan"]
    assert {"fid_prior", "fid_recon", "fid_expost", "kid_prior", "mse", "ssim", "sharpness_recon",
            "diversity_prior", "shared_pattern_prior"} <= set(vae)
    assert "fid_recon" not in gan and "fid_prior" in gan and gan["options"]["g_loss"] == "nonsaturating"
    # Real training faces against real held-out faces: what a perfect model would score.
    assert 0 < p["floor_fid"] < min(vae["fid_prior"], gan["fid_prior"])
    text = M.table(r)
    assert "| FID prior samples |" in text and f"| {p['floor_fid']:.1f} |" in text
    assert f"| {vae['mse']:.4f} |" in text  # a precision per row, the same in every column
    # The reconstructions scored are kept with the run, for identity where the checkpoint cannot go.
    held_out, _ = D.holdout_set(None, 150)
    kept = Run(two_runs / "vae").kept_reconstructions(held_out)
    assert kept.shape == held_out.shape and M.recon_errors(held_out, kept)[0] == vae["mse"]
    assert torch.equal(Run(two_runs / "vae").kept_reconstructions(held_out[:40]), kept[:40])  # the first ones
    assert Run(two_runs / "vae").kept_reconstructions(held_out[1:41]) is None  # of other faces
    assert Run(two_runs / "vae").kept_reconstructions(D.holdout_set(None, 151)[0]) is None  # more than kept
    assert not Run(two_runs / "gan").reconstructions.exists()


def test_sets_can_be_chosen(two_runs, tmp_path):
    r = M.evaluate([two_runs / "vae"], n=64, n_ref=64, extractor=tiny_extractor(), sets=("prior", "recon"))
    assert "fid_recon" in r["runs"]["vae"] and "fid_expost" not in r["runs"]["vae"]


def test_reference_features_are_computed_once_and_cached(tmp_path):
    calls, ext = [], tiny_extractor()
    counting = lambda images: calls.append(len(images)) or ext(images)
    images = faces(60, 1)
    first = M.cached_features(counting, images, "holdout.h5|w", tmp_path, None)
    again = M.cached_features(counting, images, "holdout.h5|w", tmp_path, None)
    assert sum(calls) == 60 and torch.equal(first, again)
    M.cached_features(counting, images[:30], "holdout.h5|w", tmp_path, None)  # another count: another file
    assert sum(calls) == 90
    stats = np.load(next(tmp_path.glob("features-*.npz")))
    assert stats["mu"].shape == (128,) and stats["sigma"].shape == (128, 128)


def test_kid_passes_only_arguments_torch_fidelity_knows(monkeypatch):
    import torch_fidelity.metric_kid as tk
    from torch_fidelity.defaults import DEFAULTS
    seen = {}
    real = tk.kid_features_to_metric
    monkeypatch.setattr(tk, "kid_features_to_metric", lambda a, b, **kw: seen.update(kw) or real(a, b, **kw))
    a = M.features(tiny_extractor(), faces(50, 1))
    M.kid(a, a, subsets=2)
    assert set(seen) <= set(DEFAULTS), set(seen) - set(DEFAULTS)  # an unknown name would be ignored silently


def test_collapse_measures():
    real = faces(64, 1)
    stamped = (real.float() * 0.5 + 127 * (torch.arange(64) % 2).view(1, 1, 1, 64)).clamp(0, 255).to(torch.uint8)
    assert M.shared_pattern(stamped) > 10 * M.shared_pattern(real)  # a stripe on every face survives the average
    assert M.diversity(real[:1].repeat(64, 1, 1, 1)) == 0 < M.diversity(real)


def test_evaluate_cli_with_real_inception_weights(two_runs, tmp_path, capsys):
    weights = os.environ.get("LABKIT_INCEPTION")
    if not weights or not Path(weights).is_file():
        pytest.skip("LABKIT_INCEPTION does not point at local FID Inception weights")
    out = tmp_path / "m.json"
    assert main(["evaluate", str(two_runs / "vae"), "--n", "16", "--n-ref", "16", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["protocol"]["weights"] == weights and r["runs"]["vae"]["fid_prior"] > 0
    assert "FID prior samples" in capsys.readouterr().out


def test_missing_weights_file_is_a_clear_error(two_runs, capsys):
    assert main(["evaluate", str(two_runs / "vae"), "--inception-weights", "/nowhere.pth"]) == 2
    assert "no such Inception weights file" in capsys.readouterr().err
