"""Evaluation on held-out faces: FID/KID (torch-fidelity), reconstruction MSE/SSIM, sharpness,
and two collapse measures.

For each run: prior samples N(0, I); for VAE and VAE-GAN also reconstructions of the held-out
faces (kept in the run folder, so that identity can judge the very images scored here) and,
optionally, "ex-post" samples from one Gaussian fitted to the encoded training set
(RAE paper, Ghosh et al. 2020). Every FID is read beside its floor: the FID between real
training faces and the held-out faces with the same image counts, what a perfect model would
score under this protocol. Inception features of the held-out faces and of the floor's training
faces are cached as .npz (features, mean, covariance), computed once per data file and count.
Inception weights: torch-fidelity's download by default, or a local file (--inception-weights /
LABKIT_INCEPTION) on machines without internet.
"""
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from labkit import LabkitError, data as D
from labkit.models import MODELS
from labkit.options import learned_settings
from labkit.runs import Run, load_nets, provenance

SETS = ("prior", "recon", "expost")


def inception(weights=None, device="cpu"):
    """The FID Inception-v3 (pool3, 2048-d) as a function uint8 NCHW -> features."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    weights = weights or os.environ.get("LABKIT_INCEPTION")
    if weights and not Path(weights).is_file():
        raise LabkitError(f"{weights}: no such Inception weights file")
    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=weights)
    net = fold_batchnorm(net.eval()).to(device, memory_format=torch.channels_last)
    return lambda images: net(images.to(device))[0]


def fold_batchnorm(net):
    """Inception's BatchNorms folded into the convolutions before them; with the channels-last
    layout, 1.7x the images/s on a 2-core CPU, features equal to 2e-6 of their size."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    for m in net.modules():
        conv, bn = getattr(m, "conv", None), getattr(m, "bn", None)
        if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
            m.conv, m.bn = fuse_conv_bn_eval(m.conv, m.bn), torch.nn.Identity()
    return net


@torch.no_grad()
def features(extractor, images, batch=100, desc=None):
    """Features of uint8 NCHW images, in batches, as a float64 CPU tensor."""
    from tqdm import tqdm
    # tqdm on the process's own stderr: the console, also under papermill (see train.loop)
    out = [extractor(images[i:i + batch]).double().cpu()
           for i in tqdm(range(0, len(images), batch), desc=desc, unit="batch", leave=False, disable=desc is None,
                         file=sys.__stderr__, mininterval=2)]
    return torch.cat(out)


def cached_features(extractor, images, source, cache_dir, desc):
    """features() of a real image set, kept in cache_dir as an .npz with its mean and covariance
    (EDM's reference statistics), named by the set's source (file and weights) and count."""
    key = hashlib.sha1(f"{source}|{len(images)}".encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"features-{key}.npz" if cache_dir else None
    if path is not None and path.is_file():
        return torch.from_numpy(np.load(path)["features"])
    feats = features(extractor, images, desc=desc)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, features=feats.numpy(), mu=feats.mean(0).numpy(), sigma=np.cov(feats.numpy(), rowvar=False),
                 source=source, count=len(images))
        os.replace(tmp, path)
    return feats


def fid(feats_a, feats_b):
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    return fid_statistics_to_metric(fid_features_to_statistics(feats_a), fid_features_to_statistics(feats_b),
                                    verbose=False)["frechet_inception_distance"]


def kid(feats_a, feats_b, subsets=100, seed=0):
    """Unbiased KID (cubic polynomial kernel) over random subsets, mean and std (torch-fidelity 0.4)."""
    from torch_fidelity.metric_kid import kid_features_to_metric
    size = min(1000, len(feats_a), len(feats_b))
    out = kid_features_to_metric(feats_a.float(), feats_b.float(), kid_subsets=subsets, kid_subset_size=size,
                                 kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None,
                                 kid_kernel_poly_coef0=1, rng_seed=seed, verbose=False)
    return out["kernel_inception_distance_mean"], out["kernel_inception_distance_std"]


def sharpness(images_u8):
    """Mean variance of the Laplacian of the grey image (0-255 scale): higher is sharper."""
    grey = images_u8.float().mul(torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    kernel = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3)
    return F.conv2d(grey, kernel).flatten(1).var(1).mean().item()


def diversity(images_u8):
    """Mean pairwise distance between images (pixels in [0, 1]): near 0 when samples collapse."""
    x = images_u8.float().flatten(1) / 255
    return torch.pdist(x).mean().item() / x.shape[1] ** 0.5


def shared_pattern(images_u8):
    """Sharpness of the average image. Detail that differs between faces averages away, a
    pattern stamped on every sample (stripes, a checkerboard) does not: real faces score low."""
    return sharpness(images_u8.float().mean(0, keepdim=True).round().to(torch.uint8))


def recon_errors(real_u8, recon_u8):
    """Pixel MSE on the [0, 1] scale, and SSIM (torchmetrics, Gaussian window 11)."""
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim
    a, b = real_u8.float() / 255, recon_u8.float() / 255
    return F.mse_loss(b, a).item(), ssim(b, a, data_range=1.0).item()


def expost_gaussian(mu, n, generator):
    """Samples of N(m, S) fitted to encoded training means (S regularised to stay positive definite)."""
    m = mu.double().mean(0)
    cov = torch.cov(mu.double().T) + 1e-5 * torch.eye(mu.shape[1], dtype=torch.float64)
    chol = torch.linalg.cholesky(cov)
    eps = torch.randn(n, mu.shape[1], generator=generator, dtype=torch.float64)
    return (m + eps @ chol.T).float()


def evaluate_run(run, ref, extractor, n, sets=SETS, seed=0, device="cpu"):
    """Every metric of one run against the reference `ref` (see evaluate), as a flat dict.
    Random draws stay on the CPU, so the numbers do not depend on the device."""
    nets, o = load_nets(run, device)
    g = torch.Generator().manual_seed(seed)
    images = {"prior": nets.decode(torch.randn(n, o["latent"], generator=g))}
    result = {"model": o["model"], "run": str(run), "options": learned_settings(o)}
    if nets.has_encoder:
        if "recon" in sets:
            images["recon"] = nets.decode(nets.encode(ref["held_out"]))
            Run(run).keep_reconstructions(images["recon"], ref["held_out"])
            result["mse"], result["ssim"] = recon_errors(ref["held_out"], images["recon"])
        if "expost" in sets:
            images["expost"] = nets.decode(expost_gaussian(nets.encode(ref["train"]), n, g))
    for kind, imgs in images.items():
        f = features(extractor, imgs, desc=f"{o['model']} {kind}")
        result[f"fid_{kind}"] = fid(ref["features"], f)
        result[f"kid_{kind}"], result[f"kid_{kind}_std"] = kid(ref["features"], f, seed=seed)
        result[f"sharpness_{kind}"] = sharpness(imgs)
    result["diversity_prior"] = diversity(images["prior"][:500]) / ref["diversity"]
    result["shared_pattern_prior"] = shared_pattern(images["prior"]) / ref["shared_pattern"]
    return result


def evaluate(runs, data=None, n=10_000, weights=None, seed=0, out=None, extractor=None, n_ref=None, sets=SETS,
             cache_dir=None):
    """Evaluate runs against the held-out faces; write and return the JSON with its protocol.

    n images per generated set, against n_ref held-out faces (None: all); the floor compares
    n training faces with the same held-out faces. cache_dir (default: beside `out`) keeps the
    real sets' features."""
    t0 = time.time()
    # Inception over 10,000+ images is seconds on a GPU and an hour on a laptop CPU.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if extractor is None:
        extractor = inception(weights, device)
        cache_dir = cache_dir or (Path(out).parent / "cache" if out else None)
    else:  # a stand-in extractor (tests): its features must not land in the Inception cache
        cache_dir = None
    held_out, reference = D.holdout_set(data, n_ref)
    train, train_note = D.training_set(data, n)
    weights_used = str(weights or os.environ.get("LABKIT_INCEPTION") or "torch-fidelity download (float32)")
    ref = {"held_out": held_out, "train": train,
           "features": cached_features(extractor, held_out, f"{reference}|{weights_used}", cache_dir,
                                       "held-out features"),
           "diversity": diversity(held_out[:500]), "shared_pattern": shared_pattern(held_out)}
    floor_feats = cached_features(extractor, train, f"{train_note}|{weights_used}", cache_dir, "training features")
    floor_kid, _ = kid(ref["features"], floor_feats, seed=seed)
    results = {"protocol": {
        "reference": reference, "reference_count": len(held_out), "generated_count": n,
        "reconstructed_count": len(held_out), "expost_fit_count": len(train), "sets": list(sets),
        "floor_fid": fid(ref["features"], floor_feats), "floor_kid": floor_kid, "floor_count": len(train),
        "floor": f"{len(train):,} training faces vs the {len(held_out):,} held-out faces"
                 + (" (all the training faces there are: fewer than the generated sets)" if len(train) < n else ""),
        "feature_extractor": "torch-fidelity inception-v3-compat pool3 (2048)", "weights": weights_used,
        "seed": seed, **provenance(device), "sharpness_real": sharpness(held_out),
        "sharpness": "mean variance of the Laplacian, grey 0-255", "mse": "pixels on the [0, 1] scale",
        "diversity": "mean pairwise pixel distance of 500 prior samples / that of 500 held-out faces",
        "shared_pattern": "sharpness of the mean prior sample / that of the mean held-out face",
    }}
    results["runs"] = {Path(r).name: evaluate_run(r, ref, extractor, n, sets, seed, device) for r in runs}
    results["protocol"]["seconds"] = round(time.time() - t0, 1)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(results, indent=2) + "\n")
    return results


# (label, key, scale, format, the real faces' value in the protocol): a format per row, so that
# a column reads as one precision.
ROWS = [("FID prior samples", "fid_prior", 1, ".1f", "floor_fid"),
        ("FID reconstructions", "fid_recon", 1, ".1f", "floor_fid"),
        ("FID ex-post Gaussian", "fid_expost", 1, ".1f", "floor_fid"),
        ("KID prior x1000", "kid_prior", 1000, ".1f", "floor_kid"),
        ("KID reconstructions x1000", "kid_recon", 1000, ".1f", "floor_kid"),
        ("pixel MSE (recon)", "mse", 1, ".4f", None),
        ("SSIM (recon)", "ssim", 1, ".3f", None),
        ("sharpness samples", "sharpness_prior", 1, ".0f", "sharpness_real"),
        ("sharpness reconstructions", "sharpness_recon", 1, ".0f", "sharpness_real"),
        ("sample diversity (real = 1)", "diversity_prior", 1, ".2f", None),
        ("shared pattern (real = 1)", "shared_pattern_prior", 1, ".2f", None)]


def table(results):
    """The metrics side by side as markdown: one row per metric, one column per run, and the
    real faces' value (the FID/KID floor, real sharpness) where there is one."""
    runs, p = results["runs"], results["protocol"]
    names = [MODELS[r["model"]].title if r["model"] in MODELS else name for name, r in runs.items()]
    head = "| metric | " + " | ".join(names) + " | real faces |\n|---|" + "---|" * (len(runs) + 1) + "\n"
    body = ""
    for label, key, scale, fmt, real in ROWS:
        if any(key in r for r in runs.values()):
            cells = [f"{r[key] * scale:{fmt}}" if key in r else "—" for r in runs.values()]
            cells.append(f"{p[real] * scale:{fmt}}" if real else "—")
            body += f"| {label} | " + " | ".join(cells) + " |\n"
    return head + body + (f"\n{p['generated_count']:,} generated images per set against "
                          f"{p['reference_count']:,} held-out faces; floor: {p['floor']}.\n")
