"""What the VAE-GAN's learned similarity metric charges: L_llike on Dis_l, as the decoder trains on
it, for changes to real faces that all cost the same in pixels.

A pixel loss charges every change by its squared size; the paper replaces it with distances
between the discriminator's features, which follow what D needs to tell real from fake. Measured
here: whatever that metric barely charges, the decoder is free to get wrong.
"""
import torch
import torch.nn.functional as F

from labkit.data import to_float, to_uint8
from labkit.losses import feature_llike
from labkit.metrics import features

SIGMAS = (1, 1.5, 2, 3, 4, 6, 8, 12, 16)  # the blurs to choose from, in pixels


def _gaussian_blur(x, sigma):
    r = min(int(3 * sigma), x.shape[-1] - 1)  # reflect padding needs r below the image size
    k = torch.exp(-torch.arange(-r, r + 1, dtype=x.dtype, device=x.device).square() / (2 * sigma ** 2))
    k, c = k / k.sum(), x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _blur_change(x, mse):
    """For each face, the change made by the lightest blur of SIGMAS that costs at least `mse`
    (the strongest if none does): scaled down to `mse` it stays a blur, where scaling a light
    blur up would sharpen the face's edges into ghosts."""
    changes = torch.stack([_gaussian_blur(x, s) - x for s in SIGMAS])
    reach = (changes / 2).square().mean((2, 3, 4)) >= mse
    pick = torch.where(reach.any(0), reach.float().argmax(0), len(SIGMAS) - 1)
    return changes[pick, torch.arange(len(x))]


def perturbations(images_u8, mse=0.01, seed=0):
    """Four changes to uint8 faces, each scaled to pixel MSE `mse` (on the [0, 1] scale, before
    clipping): one colour offset over the whole face, smooth colour blotches (16-pixel scale), a
    Gaussian blur (mixed back with the face) and per-pixel noise. Returns {name: uint8 images}."""
    x = to_float(images_u8)
    g = torch.Generator().manual_seed(seed)
    n, c, h, w = x.shape
    smooth = F.interpolate(F.avg_pool2d(torch.randn(n, c, h, w, generator=g), 16), size=(h, w), mode="bilinear")
    changes = {"colour shift": torch.randn(n, c, 1, 1, generator=g).expand_as(x),
               "colour blotches": smooth,
               "blur": _blur_change(x, mse),
               "pixel noise": torch.randn(n, c, h, w, generator=g)}
    # On [-1, 1] a change d costs (d / 2)^2 per element on the [0, 1] scale.
    scaled = {k: d * (mse / (d / 2).square().mean((1, 2, 3), keepdim=True).clamp_min(1e-12)).sqrt()
              for k, d in changes.items()}
    return {k: to_uint8((x + d).clamp(-1, 1)) for k, d in scaled.items()}


@torch.no_grad()
def charges(nets, images_u8, changed, normalized, batch=100):
    """Pixel MSE ([0, 1] scale) and L_llike on the discriminator's Dis_l (normalised as the run
    trained it) between real faces and each set of changed ones ({name: uint8 images}, same order).
    Returns {name: {"mse": ..., "llike": ...}}."""
    dev = next(nets.dis.parameters()).device
    dis_l = lambda u8: nets.dis.features(to_float(u8.to(dev)))
    real = features(dis_l, images_u8, batch)
    return {name: {"mse": F.mse_loss(y.float() / 255, images_u8.float() / 255).item(),
                   "llike": feature_llike(real, features(dis_l, y, batch), normalized).item()}
            for name, y in changed.items()}


def markdown(rows):
    """The table of `charges` (with a "blur" row), each change's L_llike per unit of pixel MSE
    against the blur's."""
    rate = {k: r["llike"] / max(r["mse"], 1e-12) for k, r in rows.items()}
    lines = ["| change | pixel MSE | L_llike | L_llike per pixel MSE (blur = 1) |", "|---|---|---|---|"]
    lines += [f"| {k} | {r['mse']:.4f} | {r['llike']:.3f} | {rate[k] / rate['blur']:.2f} |" for k, r in rows.items()]
    return "\n".join(lines)
