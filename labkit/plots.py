"""Image grids and figures. Images arrive as uint8 NCHW tensors or arrays."""
from pathlib import Path

import numpy as np
import torch
from torchvision.utils import make_grid

from labkit.options import EQUILIBRIUM
from labkit.runs import Run


def grid(images, nrow=8, pad=2):
    """uint8 NCHW -> one HWC uint8 array, white gutters."""
    images = torch.as_tensor(np.asarray(images))
    return make_grid(images, nrow=nrow, padding=pad, pad_value=255).permute(1, 2, 0).numpy()


def interleave(real, recon, nrow=8):
    """Rows of originals, each followed by the row of their reconstructions."""
    real, recon = torch.as_tensor(np.asarray(real)), torch.as_tensor(np.asarray(recon))
    n = (len(real) // nrow) * nrow
    pairs = torch.stack([real[:n].view(-1, nrow, *real.shape[1:]), recon[:n].view(-1, nrow, *real.shape[1:])], 1)
    return pairs.reshape(-1, *real.shape[1:])


def save_png(array, path):
    from PIL import Image
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path)


def finish(fig, path=None):
    """Lay out a figure and write it to `path` when given (the report's figures folder)."""
    fig.tight_layout()
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def panels(named_images, path=None, nrow=8, title=None, scale=1.0, stacked=False):
    """Grids side by side (or `stacked` one above the other), a title over each: the comparison
    figures of the report."""
    import matplotlib.pyplot as plt
    arrays = {k: grid(v, nrow) for k, v in named_images.items()}
    h, w = next(iter(arrays.values())).shape[:2]
    rows, cols = (len(arrays), 1) if stacked else (1, len(arrays))
    fig, axes = plt.subplots(rows, cols, figsize=(scale * 3.2 * cols * w / h, scale * 3.6 * rows), squeeze=False)
    for ax, (name, arr) in zip(axes.flat, arrays.items()):
        ax.imshow(arr, interpolation="nearest")
        ax.set_title(name, fontsize=11)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=12)
    return finish(fig, path)


def zoom(images, rows, cols, scale=3):
    """A crop of uint8 NCHW images (rows and cols as (start, stop)), enlarged without smoothing."""
    crop = images[:, :, rows[0]:rows[1], cols[0]:cols[1]].float()
    return torch.nn.functional.interpolate(crop, scale_factor=scale, mode="nearest").to(images.dtype)


def loss_curves(runs, path=None):
    """One panel per run (title -> run folder), every logged loss against images seen."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.2), squeeze=False)
    for ax, (name, run_dir) in zip(axes[0], runs.items()):
        rows = [r for r in Run(run_dir).stats() if "kimg" in r]
        keys = [k for k in (rows[0] if rows else {}) if k.startswith("loss/")]
        for k in keys:
            ax.plot([r["kimg"] for r in rows], [r[k] for r in rows], label=k[5:])
        ax.set_title(name)
        ax.set_xlabel("thousand images seen")
        ax.grid(alpha=0.3)
        if keys:
            ax.legend(fontsize=8)
            if all(r[k] > 0 for r in rows for k in keys):
                ax.set_yscale("log")
    return finish(fig, path)


# The diagnostics panels: title, the "diag/" keys drawn in it (those the run logged), log scale.
DIAGNOSTICS = (
    ("D's probability D(x)", ("D_real", "D_recon", "D_prior"), False),
    ("D's cost on real and fake images", ("cost_real", "cost_fake"), False),
    ("decoder gradient norm, by term", ("dec_grad_feature", "dec_grad_gan"), True),
    ("layer l weight norm", ("layer_l_norm",), False),
    ("share of steps updated", ("updates_dis", "updates_dec"), False),
)


def diagnostics(run_dir, path=None):
    """What the losses hide, against images seen: D on real, reconstructed and prior images, D's
    costs (with the equilibrium rule's band when it is on), how hard each term pulls the
    decoder, the growth of layer l's weights (L_llike scales with it), and how often D and the
    decoder were updated. Returns None for a run without a discriminator (the VAE)."""
    import matplotlib.pyplot as plt
    run = Run(run_dir)
    rows = [r for r in run.stats() if "kimg" in r]
    if not any("diag/cost_real" in r for r in rows):  # every model with a D logs its cost
        return None
    panels = [(t, [k for k in keys if any(f"diag/{k}" in r for r in rows)], log) for t, keys, log in DIAGNOSTICS]
    panels = [p for p in panels if p[1]]
    margin = run.options().get("margin")
    cols = min(3, len(panels))
    nrows = -(-len(panels) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.0 * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (name, keys, log) in zip(axes.flat, panels):
        for k in keys:
            points = [(r["kimg"], r[f"diag/{k}"]) for r in rows if f"diag/{k}" in r]
            ax.plot(*zip(*points), label=k)
        if keys[0] == "cost_real" and margin:
            ax.axhspan(EQUILIBRIUM - margin, EQUILIBRIUM + margin, color="0.88", zorder=0,
                       label="equilibrium band: both update")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("thousand images seen")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        if log:
            ax.set_yscale("log")
    return finish(fig, path)
