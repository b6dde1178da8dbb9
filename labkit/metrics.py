"""Evaluation on held-out faces: FID/KID (torch-fidelity), reconstruction MSE/SSIM, sharpness.

For each run: prior samples N(0, I); for VAE and VAE-GAN also reconstructions of the held-out
faces and "ex-post" samples from one Gaussian fitted to the encoded training set (RAE paper,
Ghosh et al. 2020). Inception features of the held-out set are computed once and shared by all
runs. Inception weights: torch-fidelity's download by default, or a local file
(--inception-weights / LABKIT_INCEPTION) on machines without internet.
"""
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from labkit import LabkitError, data as D
from labkit.runs import load_nets, provenance


def inception(weights=None, device="cpu"):
    """The FID Inception-v3 (pool3, 2048-d) as a function uint8 NCHW -> features."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    weights = weights or os.environ.get("LABKIT_INCEPTION")
    if weights and not Path(weights).is_file():
        raise LabkitError(f"{weights}: no such Inception weights file")
    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=weights)
    net = net.eval().to(device)
    return lambda images: net(images.to(device))[0]


@torch.no_grad()
def features(extractor, images, batch=100, desc=None):
    """Features of uint8 NCHW images, in batches, as a float64 CPU tensor."""
    from tqdm import tqdm
    out = [extractor(images[i:i + batch]).double().cpu()
           for i in tqdm(range(0, len(images), batch), desc=desc, unit="batch", leave=False, disable=desc is None)]
    return torch.cat(out)


def fid(feats_a, feats_b):
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    return fid_statistics_to_metric(fid_features_to_statistics(feats_a), fid_features_to_statistics(feats_b),
                                    verbose=False)["frechet_inception_distance"]


def kid(feats_a, feats_b, subsets=100, seed=0):
    """Unbiased KID (polynomial kernel) over random subsets, mean and std, as in torch-fidelity."""
    from torch_fidelity.metric_kid import kid_features_to_metric
    size = min(1000, len(feats_a), len(feats_b))
    out = kid_features_to_metric(feats_a.float(), feats_b.float(), kid_subsets=subsets, kid_subset_size=size,
                                 kid_degree=3, kid_gamma=None, kid_coef0=1, rng_seed=seed, verbose=False)
    return out["kernel_inception_distance_mean"], out["kernel_inception_distance_std"]


def sharpness(images_u8):
    """Mean variance of the Laplacian of the grey image (0-255 scale): higher is sharper."""
    grey = images_u8.float().mul(torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    kernel = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3)
    return F.conv2d(grey, kernel).flatten(1).var(1).mean().item()


def recon_errors(real_u8, recon_u8):
    """Pixel MSE on the [0, 1] scale, and SSIM (torchmetrics, Gaussian window 11)."""
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim
    a, b = real_u8.float() / 255, recon_u8.float() / 255
    return F.mse_loss(b, a).item(), ssim(b, a, data_range=1.0).item()


def diversity(images_u8):
    """Mean pairwise distance between images (pixels in [0, 1]): near 0 when samples collapse."""
    x = images_u8.float().flatten(1) / 255
    return torch.pdist(x).mean().item() / x.shape[1] ** 0.5


def expost_gaussian(mu, n, generator):
    """Samples of N(m, S) fitted to encoded training means (S regularised to stay positive definite)."""
    m = mu.double().mean(0)
    cov = torch.cov(mu.double().T) + 1e-5 * torch.eye(mu.shape[1], dtype=torch.float64)
    chol = torch.linalg.cholesky(cov)
    eps = torch.randn(n, mu.shape[1], generator=generator, dtype=torch.float64)
    return (m + eps @ chol.T).float()


def evaluate_run(run, held_out, train_images, extractor, real_feats, n, seed=0, device="cpu"):
    """Every metric of one run, as a flat dict. Random draws stay on the CPU, so the numbers do
    not depend on the device."""
    nets, o = load_nets(run, device)
    g = torch.Generator().manual_seed(seed)
    samples = nets.decode(torch.randn(n, o["latent"], generator=g))
    sets = {"prior": samples}
    result = {"model": o["model"], "run": str(run), "options": {k: o[k] for k in
              ("profile", "epochs", "batch", "lr", "optimizer", "beta", "gamma", "g_loss", "latent", "width", "limit", "seed")}}
    if nets.has_encoder:
        recon = nets.decode(nets.encode(held_out))
        sets["recon"] = recon
        sets["expost"] = nets.decode(expost_gaussian(nets.encode(train_images), n, g))
        result["mse"], result["ssim"] = recon_errors(held_out, recon)
    for kind, images in sets.items():
        f = features(extractor, images, desc=f"{o['model']} {kind}")
        result[f"fid_{kind}"] = fid(real_feats, f)
        result[f"kid_{kind}"], result[f"kid_{kind}_std"] = kid(real_feats, f, seed=seed)
        result[f"sharpness_{kind}"] = sharpness(images)
    return result


def evaluate(runs, data=None, n=10_000, weights=None, seed=0, out=None, extractor=None, n_train=10_000, n_ref=None):
    """Evaluate runs against the held-out set; write and return the JSON with its protocol."""
    t0 = time.time()
    # Inception over 10,000+ images is seconds on a GPU and hours on a laptop CPU.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    held_out, reference = D.holdout_set(data, n_ref)
    train_images, _ = D.training_set(data, n_train)
    extractor = extractor or inception(weights, device)
    real_feats = features(extractor, held_out, desc="held-out features")
    results = {"protocol": {
        "reference": reference, "reference_count": len(held_out), "generated_count": n,
        "reconstructed_count": len(held_out), "expost_fit_count": len(train_images),
        "feature_extractor": "torch-fidelity inception-v3-compat pool3 (2048)",
        "weights": str(weights or os.environ.get("LABKIT_INCEPTION") or "torch-fidelity download (float32)"),
        "seed": seed, **provenance(device),
        "sharpness": "mean variance of the Laplacian, grey 0-255", "mse": "pixels on the [0, 1] scale",
    }, "runs": {}}
    results["runs"] = {Path(r).name: evaluate_run(r, held_out, train_images, extractor, real_feats, n, seed, device)
                       for r in runs}
    results["protocol"]["sharpness_real"] = sharpness(held_out)
    results["protocol"]["seconds"] = round(time.time() - t0, 1)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(results, indent=2) + "\n")
    return results


def table(results):
    """The metrics side by side as markdown: one row per metric, one column per run."""
    runs = results["runs"]
    rows = [("FID prior samples", "fid_prior", 1), ("FID reconstructions", "fid_recon", 1),
            ("FID ex-post Gaussian", "fid_expost", 1), ("KID prior x1000", "kid_prior", 1000),
            ("KID reconstructions x1000", "kid_recon", 1000), ("pixel MSE (recon)", "mse", 1),
            ("SSIM (recon)", "ssim", 1), ("sharpness samples", "sharpness_prior", 1),
            ("sharpness reconstructions", "sharpness_recon", 1)]
    head = "| metric | " + " | ".join(runs) + " |\n|---|" + "---|" * len(runs) + "\n"
    body = "".join(f"| {label} | " + " | ".join(f"{r[key] * scale:.4g}" if key in r else "—" for r in runs.values())
                   + " |\n" for label, key, scale in rows)
    return head + body + f"\nReal held-out faces: sharpness {results['protocol']['sharpness_real']:.4g}.\n"
