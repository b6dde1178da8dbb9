"""Every setting of a run in one table, and the profiles that size a run.

The table is the single source: `options()` fills and checks a run's settings from it, the CLI
builds its arguments from it (`add_arguments`), the notebooks pass its names through, and the
report's settings table describes a comparison with its help strings.
"""
import math
import os
from dataclasses import dataclass

from labkit import LabkitError
from labkit.losses import D_WEIGHTS, DEC_BATCHES, G_LOSSES
from labkit.models import FEATURE_LAYERS, INITS, MODELS, REGISTRY, spec

OPTIMIZERS = ("rmsprop", "adam")
ON_NAN = ("stop", "rollback")
# The authors' equilibrium: D's mean cost -log D(x) on real and -log(1 - D(x)) on fakes is
# ln 2 = 0.69 when D cannot tell them apart; 0.68 is their centre for the margin.
EQUILIBRIUM = 0.68


# What each profile sets, training and evaluation alike (per_model: settings for some models only).
# smoke: a width-1/8 network on a small set, minutes on a CPU, a pipeline check. full: the
# handout's settings, a GPU job. cpu: the handout's tables at width 1/4 on all 8,000 training faces,
# with the settings each row of docs/cpu-profile.md chose on its evidence, sized so that the four
# trainings and their evaluation fit in an hour on a 2-core laptop.
# The models whose likelihood is on Dis_l weigh their KL as at layer 4 (docs/cpu-profile.md#beta).
FEATURE_METRIC = dict(beta=8.0)
PROFILES = {
    "smoke": dict(width=0.125, latent=128, epochs=4, batch=32, limit=2048, log_every=10, ckpt_every=100,
                  eval_n=64, n_ref=64),
    "cpu": dict(width=0.25, latent=128, epochs=16, batch=32, limit=None, log_every=25, ckpt_every=500,
                margin=0.35, feature_layer=2, feature_norm=True, gamma=10.0, ema=10.0,
                eval_n=1000, n_ref=1000, eval_sets=("prior", "recon"),
                per_model={"vaegan": FEATURE_METRIC, "vaedisl": FEATURE_METRIC}),
    "full": dict(width=1.0, latent=2048, epochs=100, batch=64, limit=None, log_every=50, ckpt_every=2500,
                 eval_n=10_000, n_ref=None),
}
EVALUATION = ("eval_n", "n_ref", "eval_sets")  # profile keys that size the evaluation, not the training


def profile_settings(profile, model):
    """The training settings a profile gives one model: its shared ones, then per_model[model]'s (a
    conditional model: those of the model it conditions)."""
    shared = {k: v for k, v in PROFILES[profile].items() if k not in (*EVALUATION, "per_model")}
    base = spec(model).base or model if model in REGISTRY else model
    return dict(shared, **PROFILES[profile].get("per_model", {}).get(base, {}))


@dataclass(frozen=True)
class Option:
    default: object
    help: str
    kind: type = str              # int, float, bool or str
    choices: tuple = None         # allowed values (kind str); a dict: its keys, live (the model registry)
    interval: tuple = None        # (low, high]: allowed range (kind int or float)
    low_open: bool = True         # False: [low, high]
    optional: bool = False        # None is allowed (means: see help)
    label: str = None             # how an error names it, if not by its key


def _positive(help, default, optional=False):
    return Option(default, help, int, interval=(0, math.inf), optional=optional)


OPTIONS = dict(
    model        = Option("vaegan", "the model (labkit.models.REGISTRY): vae (hw2), vaedisl, vaegan or gan (hw3); "
                          "cvae, cgan or cvaegan: conditioned on CelebA's attributes", choices=REGISTRY),
    profile      = Option("full", "sets the size and length of a run (see PROFILES) unless given",
                          choices=tuple(PROFILES)),
    data         = Option(None, "celeba64.h5 or its folder (default: $LABKIT_DATA, else synthetic faces)",
                          optional=True),
    epochs       = _positive("passes over the training set (handout: 100)", 100),
    batch        = _positive("images per step (handout: 64)", 64),
    lr           = Option(3e-4, "learning rate of every network (handout: 3e-4)", float, interval=(0, 1)),
    optimizer    = Option("rmsprop", "the paper's RMSProp, or adam (betas 0.5, 0.999)", choices=OPTIMIZERS),
    beta         = Option(1.0, "weight of the KL prior term (beta-VAE)", float, interval=(0, 1e4)),
    gamma        = Option(5.0, "weight of L_llike against the GAN loss in the decoder's update (handout: 5)",
                          float, interval=(0, 1e4)),
    g_loss       = Option("nonsaturating", "generator loss: nonsaturating -log D(G(z)) or saturating "
                          "log(1 - D(G(z)))", choices=G_LOSSES, label="generator loss"),
    d_weights    = Option("sum", "D loss: sum (Algorithm 1: real + each fake batch) or half (authors: 0.5 real, "
                          "0.5 mean of fakes)", choices=D_WEIGHTS),
    recon_fake   = Option(True, "D sees reconstructions as fakes (Algorithm 1); false: prior samples only (authors' "
                          "CelebA script)", bool),
    feature_layer = Option(4, "D's conv layer whose output (before its BatchNorm) is Dis_l: 4 (8x8, the authors'), "
                           "3 (16x16), 2 or 1", int, interval=(0, max(FEATURE_LAYERS))),
    feature_norm = Option(False, "divide L_llike by the mean square of Dis_l(x), so the growth of layer l's weights "
                          "cannot reweigh it", bool),
    dec_batch    = Option("split", "decode reconstructions and prior samples separately (split) or as one batch with "
                          "shared BatchNorm statistics (joint)", choices=DEC_BATCHES),
    margin       = Option(0.0, "the authors' equilibrium rule: skip D's or the decoder's update when it wins by more "
                          "than this around 0.68 (they use 0.35; 0: off)", float, interval=(0, EQUILIBRIUM),
                          low_open=False),
    lr_decay     = Option(1.0, "the learning rate falls exponentially to lr * lr_decay at the last step (1: constant)",
                          float, interval=(0, 1)),
    weight_decay = Option(0.0, "weight decay on every weight (the authors: 1e-5)", float, interval=(0, 1),
                          low_open=False),
    ema          = Option(0.0, "half-life in kimg (at most 5 per cent of the images seen) of the average of the "
                          "encoder's and decoder's weights that figures and metrics use (0: the last weights, as the "
                          "handout)", float, interval=(0, 1e4), low_open=False),
    augment      = Option(False, "jitter each training batch as the authors jittered their faces: moved up to a few "
                          "pixels, gamma, contrast and hue (labkit/augment.py)", bool),
    init         = Option("normal", "weights: normal N(0, 0.02) (DCGAN) or glorot (the authors' deeppy)",
                          choices=INITS),
    latent       = _positive("size of the latent code (handout: 2048)", 2048),
    width        = Option(1.0, "channel multiplier (1: the handout's tables)", float, interval=(0, 4)),
    limit        = _positive("train on the first N images only", None, optional=True),
    seed         = Option(0, "seed of the weights, the batch order and the noise", int),
    device       = Option("auto", "auto (cuda when present, else cpu), cpu or cuda[:N]"),
    fast         = Option(None, "bf16 autocast + channels-last (+ torch.compile, see compile); default: on for cuda "
                          "and for CPUs with bf16 instructions", bool, optional=True),
    compile      = Option(None, "torch.compile the networks on the fast path; default: on cuda only (--no-compile "
                          "keeps bf16 where this torch cannot compile them)", bool, optional=True),
    log_every    = _positive("steps between stats lines (and the only host syncs of a step)", 50),
    ckpt_every   = _positive("steps between checkpoints; also one at the end and when a time limit stops the run",
                             2500),
    on_nan       = Option("stop", "stop: keep the last good checkpoint and exit; rollback: reload it, halve lr, go on",
                          choices=ON_NAN),
    sync_bn      = Option(False, "under torchrun on GPUs: BatchNorm statistics over the global batch", bool),
)


# Settings that say how a run is carried out, not what it learns: left out of a result's record.
MECHANICS = ("model", "data", "device", "fast", "compile", "log_every", "ckpt_every", "on_nan", "sync_bn")


def learned_settings(o):
    """The settings of a run that shape what it learns (a run recorded before a setting existed: None)."""
    return {k: o.get(k) for k in OPTIONS if k not in MECHANICS}


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
        if value in o.choices:
            return None
        return f"unknown {o.label or key} {value!r}; choose one of {', '.join(o.choices)}"
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


# The settings every model trains with; each model adds its registry entry's own (Model.settings).
SHARED = ("width", "latent", "epochs", "batch", "limit", "optimizer", "lr", "lr_decay", "weight_decay", "init", "ema",
          "augment", "seed")


def _value(v):
    if v is None:
        return "all"
    return f"{v:g}" if isinstance(v, float) else str(v).lower() if isinstance(v, bool) else str(v)


def settings_table(runs):
    """The settings of a comparison as one markdown table: a row per setting, the handout's value
    (the full profile's), then a column per model (runs: model -> its settings), '–' where a
    setting does not shape that model, bold where a value is not the handout's; below it, what
    each setting that departs from the handout means."""
    own = [k for k in OPTIONS if k not in SHARED and any(k in MODELS[m].settings for m in runs)]
    keys = [*SHARED[:-1], *own, SHARED[-1]]
    handout = {k: profile_settings("full", next(iter(runs))).get(k, OPTIONS[k].default) for k in keys}
    lines = ["| setting | handout | " + " | ".join(MODELS[m].title for m in runs) + " |",
             "|---|---|" + "---|" * len(runs)]
    departs = []
    for key in keys:
        cells = []
        for m, o in runs.items():
            if key not in SHARED and key not in MODELS[m].settings:
                cells.append("–")
            elif o[key] != handout[key]:
                cells.append(f"**{_value(o[key])}**")
                departs.append(key)
            else:
                cells.append(_value(o[key]))
        lines.append(f"| `{key}` | {_value(handout[key])} | " + " | ".join(cells) + " |")
    notes = [f"- `{k}`: {OPTIONS[k].help}" for k in dict.fromkeys(departs)]
    return "\n".join(lines) + ("\n\nBold: not the handout's value. What those settings mean:\n\n" + "\n".join(notes)
                               if notes else "") + "\n"
