"""The authors' data augmentation (their dataset/celeba.py, `_resize_augment`), on batches.

They trained on 600,000 jittered copies of the CelebA training faces: each aligned image moved
(translation sigma 2 px of the 148-px crop; scale and rotation sigma 0.01) and recoloured (gamma
and contrast sigma 0.05 as powers, hue sigma 0.01 of the circle) before it was cut and resized to
64x64. Here the jitter is applied to the 64x64 faces, so the move is rounded to whole pixels
(sigma 0.86 px): sub-pixel resampling would blur every training face, and the scale and rotation,
under 0.7 px at the border, would only blur. The colours are jittered as theirs.
Each training batch is jittered afresh with the run's generator, so a resumed run draws the same
jitter, and every rank draws the whole batch's jitter and keeps its slice, so k processes jitter
exactly as one.
"""
import math

import torch
import torch.nn.functional as F

from labkit.losses import noise

CROP = 148            # side of the authors' crop of the 178x218 aligned image, in source pixels
TRANSLATION = 2.0     # source pixels
GAMMA = CONTRAST = 0.05
HUE = 0.01            # fraction of the hue circle


def log_normal_power(z, sigma):
    """The authors' power: exp(N(sigma^2, sigma) / ln 2), slightly above 1 on average."""
    return torch.exp((sigma ** 2 + sigma * z) / math.log(2))


def rgb_to_hsv(rgb):
    """(n, 3, h, w) RGB in [0, 1] -> hue (a fraction of the circle), saturation, value."""
    r, g, b = rgb.unbind(1)
    v, argmax = rgb.max(1)
    chroma = v - rgb.min(1).values
    s = torch.where(v > 0, chroma / v.clamp_min(1e-8), torch.zeros_like(v))
    c = chroma.clamp_min(1e-8)
    h = torch.stack([((g - b) / c) % 6, (b - r) / c + 2, (r - g) / c + 4], 1).gather(1, argmax[:, None])[:, 0]
    h = torch.where(chroma > 0, h / 6, torch.zeros_like(h))
    return torch.stack([h, s, v], 1)


def hsv_to_rgb(hsv):
    h, s, v = hsv.unbind(1)
    # 5, 3, 1 for red, green, blue, made on the device: a tensor copied from the host would wait
    # for the GPU at every training step.
    k = (torch.arange(5.0, 0.0, -2.0, device=hsv.device)[None, :, None, None] + 6 * h[:, None]) % 6
    return v[:, None] - v[:, None] * s[:, None] * torch.minimum(k, 4 - k).clamp(0, 1)


def augment(x, generator, shard=(0, 1)):
    """x in [-1, 1], (n, 3, h, w) -> the same faces jittered as the authors jittered theirs."""
    n, _, height, _ = x.shape
    z = noise(n, 5, x.float(), generator, shard)
    # affine_grid works in [-1, 1] coordinates, 2 / height per pixel; whole-pixel moves sampled
    # at pixel centres copy pixels exactly.
    shift = z[:, :2].mul(TRANSLATION * height / CROP).round() * (2 / height)
    theta = torch.cat([torch.eye(2, device=x.device).expand(n, 2, 2), -shift[:, :, None]], 2)
    grid = F.affine_grid(theta, (n, 3, height, height), align_corners=False)
    img = F.grid_sample(x.float().add(1).div(2), grid, mode="nearest", padding_mode="border", align_corners=False)
    img = img.clamp(0, 1) ** log_normal_power(z[:, 2], GAMMA)[:, None, None, None]
    h, s, v = rgb_to_hsv(img).unbind(1)
    contrast = log_normal_power(z[:, 3], CONTRAST)[:, None, None]
    img = hsv_to_rgb(torch.stack([(h + HUE * z[:, 4, None, None]) % 1, s ** contrast, v ** contrast], 1))
    return img.mul(2).sub(1).to(x.dtype)
