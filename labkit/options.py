"""Every setting of a run in one table, and the profiles that size a run.

The table is the single source: `options()` fills and checks a run's settings from it, the CLI
builds its arguments from it (`add_arguments`), the notebooks pass its names through, and the
report describes a run with its help strings.
"""
import math
import os
from dataclasses import dataclass

from labkit import LabkitError
from labkit.losses import D_WEIGHTS, DEC_BATCHES, G_LOSSES
from labkit.models import FEATURE_LAYERS, INITS, MODELS

OPTIMIZERS = ("rmsprop", "adam")
ON_NAN = ("stop", "rollback")
# The authors' equilibrium: D's mean cost -log D(x) on real and -log(1 - D(x)) on fakes is
# ln 2 = 0.69 when D cannot tell them apart; 0.68 is their centre for the margin.
EQUILIBRIUM = 0.68


# What each profile sets, training and evaluation alike (per_model: settings for one model
# only). smoke: a width-1/8 network on a small set, minutes on a CPU, a pipeline check. full: the
# handout's settings, a GPU job.
PROFILES = {
    "smoke": dict(width=0.125, latent=128, epochs=4, batch=32, limit=2048, log_every=10, ckpt_every=100,
                  eval_n=64, n_ref=64),
    # cpu: the handout's tables at width 1/4 on all 8,000 training faces, with the VAE-GAN
    # settings the ablation keeps; the three trainings and their evaluation fit in an hour on
    # a 2-core laptop (labkit/ablation.py). Width 1/2 scores better (prior FID VAE-GAN 67.5, GAN
    # 63.5, VAE 151.1) but trains 2.5-3.4x as long, about an hour for the report, and puts the GAN
    # ahead (figures/cpu/README.md). Batch 32: at batch 64 (half the updates) the VAE-GAN
    # was limited by its number of updates (prior FID 203 at batch 64, 137 at batch 32, 8 epochs).
    # Kept, against the handout's prior FID 184, reconstruction FID 120 and pixel MSE 0.044
    # (figures/cpu/ablation.json, 8 epochs): the authors' equilibrium rule, margin 0.35, for the
    # GAN too (137, 101, 0.033); and Dis_l from D's 2nd conv (32x32), normalised (127, 100,
    # 0.026): at 8x8 the reconstructions lose identity. 16 epochs, since bf16 on CPUs that have
    # it (the fast path) halves a step: 92, 73, 0.024 against 119, 93, 0.028 at 8 epochs (gamma 5).
    # Trained on to 20 and 24 epochs, all three improve and by 24 the GAN overtakes the VAE-GAN
    # (71.7 against 73.2 prior FID) with no face of the reconstruction grid regained
    # (figures/cpu/README.md).
    # gamma 10: at gamma 5 the GAN term still pulled the decoder 2.5x harder than the feature term;
    # at 16 epochs gamma 10 had the lower pixel error on each of the three seeds both ran (1.85-2.02x
    # the VAE's over five runs, against 2.05-2.23x) and the lower mean prior FID (97 against 99).
    # ema 10 kimg (StyleGAN2-ADA's at batch 32; by the ramp-up 6.4 kimg at the end of 128 kimg), all
    # three models: figures and metrics from the averaged weights lose the last steps' colour noise;
    # prior FID at 16 epochs, seeds 1-3: GAN 113.4 -> 108.2, 103.6 -> 98.2, 99.0 -> 86.6; VAE-GAN
    # 93.4 -> 92.8, 97.4 -> 90.2, 99.3 -> 90.3 (figures/cpu/README.md).
    # The VAE-GAN's beta 8 (the VAE keeps the handout's 1): the KL is divided by Dis_l's element
    # count, 8x larger at layer 2 than at the authors' layer 4, so beta 8 gives it the weight it
    # had there. Prior FID at 16 epochs: the report (seed 0) 91.6 -> 81.7, seeds 1-3 92.8 -> 83.5,
    # 90.2 -> 88.5, 90.3 -> 80.7, each below the same seed's GAN; pixel MSE 1.6-2.0x the VAE's
    # (figures/cpu/README.md).
    "cpu": dict(width=0.25, latent=128, epochs=16, batch=32, limit=None, log_every=25, ckpt_every=500,
                margin=0.35, feature_layer=2, feature_norm=True, gamma=10.0, ema=10.0,
                eval_n=1000, n_ref=1000, eval_sets=("prior", "recon"), per_model={"vaegan": dict(beta=8.0)}),
    "full": dict(width=1.0, latent=2048, epochs=100, batch=64, limit=None, log_every=50, ckpt_every=2500,
                 eval_n=10_000, n_ref=None),
}
EVALUATION = ("eval_n", "n_ref", "eval_sets")  # profile keys that size the evaluation, not the training


def profile_settings(profile, model):
    """The training settings a profile gives one model: its shared ones, then per_model[model]'s."""
    shared = {k: v for k, v in PROFILES[profile].items() if k not in (*EVALUATION, "per_model")}
    return dict(shared, **PROFILES[profile].get("per_model", {}).get(model, {}))


@dataclass(frozen=True)
class Option:
    default: object
    help: str
    kind: type = str              # int, float, bool or str
    choices: tuple = None         # allowed values (kind str)
    interval: tuple = None        # (low, high]: allowed range (kind int or float)
    low_open: bool = True         # False: [low, high]
    optional: bool = False        # None is allowed (means: see help)
    label: str = None             # how an error names it, if not by its key


def _positive(help, default, optional=False):
    return Option(default, help, int, interval=(0, math.inf), optional=optional)


OPTIONS = dict(
    model        = Option("vaegan", "vae (hw2), gan (hw3) or vaegan", choices=tuple(MODELS)),
    profile      = Option("full", "sets the size and length of a run (see PROFILES) unless given", choices=tuple(PROFILES)),
    data         = Option(None, "celeba64.h5 or its folder (default: $LABKIT_DATA, else synthetic faces)", optional=True),
    epochs       = _positive("passes over the training set (handout: 100)", 100),
    batch        = _positive("images per step (handout: 64)", 64),
    lr           = Option(3e-4, "learning rate of every network (handout: 3e-4)", float, interval=(0, 1)),
    optimizer    = Option("rmsprop", "the paper's RMSProp, or adam (betas 0.5, 0.999)", choices=OPTIMIZERS),
    beta         = Option(1.0, "weight of the KL prior term (beta-VAE)", float, interval=(0, 1e4)),
    gamma        = Option(5.0, "weight of L_llike against the GAN loss in the decoder's update (handout: 5)", float, interval=(0, 1e4)),
    g_loss       = Option("nonsaturating", "generator loss: nonsaturating -log D(G(z)) or saturating log(1 - D(G(z)))", choices=G_LOSSES, label="generator loss"),
    d_weights    = Option("sum", "D loss: sum (Algorithm 1: real + each fake batch) or half (authors: 0.5 real, 0.5 mean of fakes)", choices=D_WEIGHTS),
    recon_fake   = Option(True, "D sees reconstructions as fakes (Algorithm 1); false: prior samples only (authors' CelebA script)", bool),
    feature_layer = Option(4, "D's conv layer whose output (before its BatchNorm) is Dis_l: 4 (8x8, the authors'), 3 (16x16), 2 or 1", int, interval=(0, max(FEATURE_LAYERS))),
    feature_norm = Option(False, "divide L_llike by the mean square of Dis_l(x), so the growth of layer l's weights cannot reweigh it", bool),
    dec_batch    = Option("split", "decode reconstructions and prior samples separately (split) or as one batch with shared BatchNorm statistics (joint)", choices=DEC_BATCHES),
    margin       = Option(0.0, "the authors' equilibrium rule: skip D's or the decoder's update when it wins by more than this around 0.68 (they use 0.35; 0: off)", float, interval=(0, EQUILIBRIUM), low_open=False),
    lr_decay     = Option(1.0, "the learning rate falls exponentially to lr * lr_decay at the last step (1: constant)", float, interval=(0, 1)),
    weight_decay = Option(0.0, "weight decay on every weight (the authors: 1e-5)", float, interval=(0, 1), low_open=False),
    ema          = Option(0.0, "half-life in kimg (at most 5 per cent of the images seen) of the average of the encoder's and decoder's weights that figures and metrics use (0: the last weights, as the handout)", float, interval=(0, 1e4), low_open=False),
    augment      = Option(False, "jitter each training batch as the authors jittered their faces: moved up to a few pixels, gamma, contrast and hue (labkit/augment.py)", bool),
    init         = Option("normal", "weights: normal N(0, 0.02) (DCGAN) or glorot (the authors' deeppy)", choices=INITS),
    latent       = _positive("size of the latent code (handout: 2048)", 2048),
    width        = Option(1.0, "channel multiplier (1: the handout's tables)", float, interval=(0, 4)),
    limit        = _positive("train on the first N images only", None, optional=True),
    seed         = Option(0, "seed of the weights, the batch order and the noise", int),
    device       = Option("auto", "auto (cuda when present, else cpu), cpu or cuda[:N]"),
    fast         = Option(None, "bf16 autocast + channels-last (+ torch.compile on cuda); default: on for cuda and for CPUs with bf16 instructions", bool, optional=True),
    log_every    = _positive("steps between stats lines (and the only host syncs of a step)", 50),
    ckpt_every   = _positive("steps between checkpoints; also one at the end and when a time limit stops the run", 2500),
    on_nan       = Option("stop", "stop: keep the last good checkpoint and exit; rollback: reload it, halve lr, go on", choices=ON_NAN),
    sync_bn      = Option(False, "under torchrun on GPUs: BatchNorm statistics over the global batch", bool),
)


def options(**overrides):
    """Every setting of a run: the table's defaults, the profile's, then the caller's (None: unset)."""
    opts = {k: o.default for k, o in OPTIONS.items()}
    profile = overrides.get("profile") or opts["profile"]
    if profile not in PROFILES:
        raise LabkitError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    opts.update(profile_settings(profile, overrides.get("model") or opts["model"]))
    unknown = set(overrides) - set(OPTIONS)
    if unknown:
        raise LabkitError(f"unknown setting {', '.join(sorted(unknown))}; see python -m labkit train --help")
    opts.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(opts["data"], os.PathLike):  # recorded in options.json: a string
        opts["data"] = os.fspath(opts["data"])
    check_options(opts)
    return opts


def evaluation(profile, **overrides):
    """How a profile evaluates: eval_n generated images per set against n_ref held-out faces
    (None: all), for the sets eval_sets (default: all of metrics.SETS)."""
    sizes = {k: PROFILES[profile].get(k) for k in EVALUATION}
    sizes.update({k: v for k, v in overrides.items() if v is not None})
    if sizes["eval_sets"] is not None:  # a list: papermill passes a tuple to a notebook as its repr, a string
        sizes["eval_sets"] = list(sizes["eval_sets"])
    return sizes


def problem(key, value):
    """What is wrong with one setting, in one line, or None."""
    o = OPTIONS[key]
    if value is None:
        return None if o.optional else f"{key} must be set"
    if o.choices is not None:
        return None if value in o.choices else f"unknown {o.label or key} {value!r}; choose one of {', '.join(o.choices)}"
    if o.kind is bool:
        return None if isinstance(value, bool) else f"{key} must be true or false, got {value!r}"
    low, high = o.interval or (None, None)
    whole = ("an integer" if o.interval is None else "a positive integer" if high == math.inf
             else f"an integer from {low + 1} to {high}")  # an int's (low, high]
    if o.kind is int and (not isinstance(value, int) or isinstance(value, bool)):
        return f"{key} must be {whole}, got {value!r}"
    if o.interval is None:
        return None
    where = f"{key} must be in {'(' if o.low_open else '['}{low:g}, {high:g}], got {value!r}"
    if o.kind is float and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
        return where
    inside = (low < value if o.low_open else low <= value) and value <= high
    if not inside:
        return f"{key} must be {whole}, got {value!r}" if o.kind is int else where
    return None


def check_options(o):
    """Every bad setting as one line, before any work starts."""
    problems = [p for k in OPTIONS if (p := problem(k, o[k]))]
    if o["device"] not in ("auto", "cpu") and not str(o["device"]).startswith("cuda"):
        problems.append(f"device must be auto, cpu or cuda[:N], got {o['device']!r}")
    if problems:
        raise LabkitError("; ".join(problems))


def add_arguments(parser):
    """One command-line flag per option (--g-loss for g_loss), help and choices from the table."""
    import argparse
    for key, o in OPTIONS.items():
        flag = "--" + key.replace("_", "-")
        if o.kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=o.help)
        else:
            parser.add_argument(flag, type=o.kind, choices=o.choices, default=None, help=o.help,
                                required=key == "model")


def describe(o, keys):
    """A markdown table of some settings of a run: value, and what it means; bold where the
    value is not the handout's (the full profile's)."""
    rows = ["| setting | value | meaning |", "|---|---|---|"]
    for key in keys:
        value, handout = o[key], profile_settings("full", o["model"]).get(key, OPTIONS[key].default)
        rows.append(f"| `{key}` | {f'**{value}**' if value != handout else value} | {OPTIONS[key].help} |")
    return "\n".join(rows)
