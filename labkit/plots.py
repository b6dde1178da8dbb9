"""Image grids and figures. Images arrive as uint8 NCHW tensors or arrays."""
from pathlib import Path

import numpy as np
import torch
from torchvision.utils import make_grid

from labkit.models import MODELS
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


def rows(named_images, path=None, columns=8, width=7.5, column_names=None):
    """The report's comparison figures: one row of images per name (a model, the held-out faces),
    `columns` to a row, the name at the row's left (and `column_names` over the columns); more
    images than `columns` wrap into another block of the same rows below, so that each column
    compares the same face or noise."""
    import matplotlib.pyplot as plt
    named = {k: torch.as_tensor(np.asarray(v)) for k, v in named_images.items()}
    n = max(len(v) for v in named.values())
    blocks = [slice(i, i + columns) for i in range(0, n, columns)]
    strips, labels, y = [], [], 0
    for b, block in enumerate(blocks):
        for name, images in named.items():
            strip = grid(images[block], nrow=columns, pad=2)
            strips.append(strip)
            labels.append((y + strip.shape[0] / 2, name))
            y += strip.shape[0]
        if b < len(blocks) - 1:  # a white band between blocks
            strips.append(np.full((10, strips[-1].shape[1], 3), 255, np.uint8))
            y += 10
    wide = max(s.shape[1] for s in strips)
    array = np.concatenate([np.pad(s, ((0, 0), (0, wide - s.shape[1]), (0, 0)), constant_values=255) for s in strips])
    fig, ax = plt.subplots(figsize=(width, width * array.shape[0] / array.shape[1] * 0.86))
    ax.imshow(array, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([c for c, _ in labels], [name for _, name in labels], fontsize=9)
    if column_names:
        size = array.shape[1] / columns
        ax.set_xticks([size * (i + 0.5) for i in range(len(column_names))], column_names, fontsize=8)
        ax.xaxis.tick_top()
    ax.tick_params(left=False, top=False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return finish(fig, path)


def samples(nets, noise, path=None):
    """The samples figure: the same noise through each model's decoder (model -> its networks)."""
    return rows({MODELS[m].title: n.decode(noise) for m, n in nets.items()}, path)


def reconstructions(nets, faces, path=None):
    """The reconstructions figure: held-out faces, then each model's reconstructions of them (models
    without an encoder are left out)."""
    return rows({"held-out face": faces, **{MODELS[m].title: n.decode(n.encode(faces)) for m, n in nets.items()
                                           if n.has_encoder}}, path)


def zoom(images, rows, cols, scale=3):
    """A crop of uint8 NCHW images (rows and cols as (start, stop)), enlarged without smoothing."""
    crop = images[:, :, rows[0]:rows[1], cols[0]:cols[1]].float()
    return torch.nn.functional.interpolate(crop, scale_factor=scale, mode="nearest").to(images.dtype)


def loss_curves(runs, path=None, cols=2):
    """One panel per run (title -> run folder), every logged loss against images seen."""
    import matplotlib.pyplot as plt
    cols = min(cols, len(runs))
    nrows = -(-len(runs) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.8 * cols, 2.0 * nrows), squeeze=False)
    for ax in axes.flat[len(runs):]:
        ax.axis("off")
    for ax, (name, run_dir) in zip(axes.flat, runs.items()):
        rows = [r for r in Run(run_dir).stats() if "kimg" in r]
        keys = [k for k in (rows[0] if rows else {}) if k.startswith("loss/")]
        for k in keys:
            ax.plot([r["kimg"] for r in rows], [r[k] for r in rows], label=k[5:])
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("thousand images seen", fontsize=8)
        ax.grid(alpha=0.3)
        if keys:
            ax.legend(fontsize=7)
            if all(r[k] > 0 for r in rows for k in keys):
                ax.set_yscale("log")
    return finish(fig, path)


# The diagnostics panels: title, the "diag/" keys drawn in it (those the run logged), log scale.
DIAGNOSTICS = (
    ("D's probability D(x)", ("D_real", "D_recon", "D_prior"), False),
    ("D's cost, real and fake", ("cost_real", "cost_fake"), False),
    ("decoder gradient, by term", ("dec_grad_llike", "dec_grad_g"), True),
    ("layer l weight norm", ("layer_l_norm",), False),
    ("share of steps updated", ("updates_dis", "updates_dec"), False),
)

# Why a run logs no curve for a panel.
UNLOGGED = {"layer_l_norm": "no L_llike:\nlayer l is not a loss",
            "updates_dis": "no equilibrium rule:\nevery step updates"}


def diagnostics(runs, path=None):
    """What the losses hide, one row of panels per run (title -> run folder) against images seen:
    D on real, reconstructed and prior images, D's costs (with the equilibrium rule's band when it
    is on), how hard each term pulls the decoder, the growth of layer l's weights (L_llike scales
    with it), and how often D and the decoder were updated. Runs without a discriminator (the VAE)
    have no row; None when no run has one."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    logged = {name: [r for r in Run(d).stats() if "kimg" in r] for name, d in runs.items()}
    logged = {name: rows for name, rows in logged.items() if any("diag/cost_real" in r for r in rows)}
    if not logged:  # every model with a D logs its cost
        return None
    shown = [(t, [k for k in keys if any(f"diag/{k}" in r for rows in logged.values() for r in rows)], log)
             for t, keys, log in DIAGNOSTICS]
    shown = [p for p in shown if p[1]]
    fig, axes = plt.subplots(len(logged), len(shown), figsize=(1.6 * len(shown), 1.45 * len(logged)), squeeze=False)
    for row, (name, rows) in zip(axes, logged.items()):
        # The rule's band only where the rule ran: it logs how often each network stepped.
        ruled = any("diag/updates_dis" in r for r in rows)
        margin = Run(runs[name]).options().get("margin")
        row[0].set_ylabel(name, fontsize=8)
        for ax, (title, keys, log) in zip(row, shown):
            ax.set_title(title, fontsize=7)
            for k in keys:
                points = [(r["kimg"], r[f"diag/{k}"]) for r in rows if f"diag/{k}" in r]
                if points:
                    ax.plot(*zip(*points), label=k, lw=0.8)
            if not ax.get_lines():
                ax.set_axis_off()
                ax.text(0.5, 0.5, UNLOGGED.get(keys[0], "not logged"), ha="center", va="center", fontsize=7,
                        color="0.5", transform=ax.transAxes)
                continue
            if keys[0] == "cost_real" and margin and ruled:
                ax.axhspan(EQUILIBRIUM - margin, EQUILIBRIUM + margin, color="0.88", zorder=0, label="both update")
            ax.legend(fontsize=5)
            if log:  # ticks at 1-2-5 steps, written plainly: one decade or less fits in a panel
                ax.set_yscale("log")
                ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.yaxis.set_minor_formatter(NullFormatter())
            ax.tick_params(which="both", labelsize=6)
            ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("kimg", fontsize=7)
    return finish(fig, path)
