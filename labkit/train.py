"""One training loop for every model of the registry (labkit.models.MODELS).

Three levels: `training_loop(run_dir, **settings)` holds the run folder's lock and the rollback
policy; `train_run` sets up a `Training` (device, data, networks, optimizers, noise; restored
from the checkpoint when resuming) and hands it to `run_steps`, the loop itself, which on each
logged step has `maintain` write stats, checkpoints and grids. The settings are those of
labkit.options, the run folder's contents those of labkit.runs.
"""
import contextlib
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from labkit import LabkitError, data as D, plots
from labkit.augment import augment
from labkit.device import accelerate, eager, native_bf16, resolve_device
from labkit.distributed import average_gradients, distributed, leave, local_device, mean_over_ranks
from labkit.metrics import diversity
from labkit.models import AVERAGED, Nets, compute_losses, spec
from labkit.options import EQUILIBRIUM, options
from labkit.runs import Run, load_checkpoint, load_weights, provenance

MAX_ROLLBACKS = 3
# Samples of the fixed noise this much less spread than real faces trigger the collapse warning.
COLLAPSE_RATIO = 0.15
# StyleGAN2-ADA's ramp-up: the average's half-life is at most this fraction of the images seen, so
# that early grids do not show the random initialisation.
EMA_RAMPUP = 0.05
# A spread below this fraction of the run's best so far triggers the breakdown warning (docs/cpu-profile.md#collapse).
BREAKDOWN_RATIO = 0.7
N_GRID = 64


class Diverged(LabkitError):
    pass


def diverged(step, what):
    return Diverged(f"training diverged at step {step}: {what}; the last good checkpoint is kept, "
                    f"continue it with --resume and a lower --lr")


# ----------------------------------------------------------------------------------------------
# one step

def make_optimizers(nets, o, device):
    opts = {}
    for name, net in nets.named_children():
        params = net.parameters()
        if o["optimizer"] == "adam":
            opts[name] = torch.optim.Adam(params, lr=o["lr"], betas=(0.5, 0.999), weight_decay=o["weight_decay"],
                                          fused=device.type == "cuda")
        else:
            opts[name] = torch.optim.RMSprop(params, lr=o["lr"], weight_decay=o["weight_decay"], foreach=True)
    return opts


def backward_routed(nets, objectives):
    """Each network's gradient from its own objective only (Algorithm 1's three updates).

    `backward(inputs=...)` accumulates an objective's gradient into the listed parameters and
    nowhere else, so the discriminator never sees L_llike, the encoder never sees the GAN loss,
    without detaching copies or toggling requires_grad. Networks sharing one objective (the
    VAE's encoder and decoder) share one backward pass.
    """
    groups = {}
    for name, objective in objectives.items():
        groups.setdefault(id(objective), (objective, []))[1].append(name)
    for i, (objective, names) in enumerate(groups.values()):
        params = [p for n in names for p in getattr(nets, n).parameters()]
        objective.backward(inputs=params, retain_graph=i < len(groups) - 1)


def train_step(nets, opts, x, generator, o, autocast=False, shard=(0, 1), diagnose=False, y=None):
    """One update of every network (y: the batch's attributes, for a conditional model). All
    gradients are taken at the same parameters, then all optimizers step, as in Algorithm 1
    (stepping one network before another's backward on the same graph is what breaks older ports
    on modern PyTorch). `diagnose` adds the decoder's gradient norm from each of its terms (two
    more backward passes: only on logged steps)."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
        losses, objectives = compute_losses(nets, x, generator, o, shard, y)
    diag = decoder_gradients(nets, losses, o) if diagnose and "dis" in nets.spec.networks else {}
    for opt in opts.values():
        opt.zero_grad(set_to_none=True)
    backward_routed(nets, objectives)
    if shard[1] > 1:
        average_gradients(nets, shard[1])
    stepping = updated(nets.spec, opts, losses, o["margin"])
    for name in stepping:
        opts[name].step()
    if equilibrium_rule(nets.spec, losses, o["margin"]):
        ruled = [k for k in opts if k == "dis" or nets.spec.adversarial(k)]
        diag.update({f"diag/updates_{k}": torch.tensor(float(k in stepping)) for k in ruled})
    return {**{k: v.detach() for k, v in losses.items()}, **diag}


def equilibrium_rule(model, losses, margin):
    """Whether the authors' equilibrium rule applies: a margin is set, and the model (a registry
    entry) plays the game, a network of it learning to fool D. Without one (the VAE, VAE-Dis_l)
    there is nothing to balance: a D that always wins is what such a decoder leaves it."""
    return bool(margin) and "diag/cost_real" in losses and any(model.adversarial(n) for n in model.trains)


def updated(model, opts, losses, margin):
    """The networks that step. The equilibrium rule (the authors' code) freezes D while it wins
    by more than `margin` on real or fake images, and the networks that learn to fool it (the
    decoder of `model`, when its objective holds the generator loss) while it loses by more; if
    both would freeze, both step. Every other network always steps. It reads the costs on the
    host: one sync per step when it is on."""
    if not equilibrium_rule(model, losses, margin):
        return list(opts)
    costs = (losses["diag/cost_real"].item(), losses["diag/cost_fake"].item())
    dis = not any(c < EQUILIBRIUM - margin for c in costs)
    fool = not any(c > EQUILIBRIUM + margin for c in costs)
    if not (dis or fool):
        dis = fool = True
    return [k for k in opts if (dis if k == "dis" else fool or not model.adversarial(k))]


@torch.no_grad()
def update_ema(ema, nets, step, o):
    """Move the average of the encoder and decoder towards the weights after `step` updates; its
    half-life is o["ema"] kimg (ramped up, EMA_RAMPUP). BatchNorm statistics are copied, not
    averaged."""
    kimg = step * o["batch"] / 1000
    beta = 0.5 ** (o["batch"] / 1000 / min(o["ema"], EMA_RAMPUP * kimg))
    for name in AVERAGED:
        if hasattr(nets, name):
            average, live = getattr(ema, name), getattr(nets, name)
            torch._foreach_lerp_(list(average.parameters()), list(live.parameters()), 1 - beta)
            torch._foreach_copy_(list(average.buffers()), list(live.buffers()))


def set_lr(opts, o, step, total):
    """Exponential decay from lr to lr * lr_decay at the last step: a function of the step
    alone, so a resumed run follows the same schedule."""
    lr = o["lr"] * o["lr_decay"] ** (step / max(total - 1, 1))
    for opt in opts.values():
        for group in opt.param_groups:
            group["lr"] = lr


def decoder_gradients(nets, losses, o):
    """How hard each term of its objective pulls the decoder (the VAE-GAN's balance is invisible
    in the losses): the gradient norm of each weighted term (dec_grad_llike: gamma * L_llike,
    dec_grad_g: the generator loss), and the norm of layer l's weights, on which L_llike's size
    depends."""
    params = [p for p in nets.dec.parameters() if p.requires_grad]
    out = {}
    for weight, term in nets.spec.terms("dec"):
        value = losses[term] if weight is None else o[weight] * losses[term]
        grads = [g for g in torch.autograd.grad(value, params, retain_graph=True, allow_unused=True) if g is not None]
        if grads:  # a term the decoder does not reach (the prior) pulls it nowhere
            out[f"diag/dec_grad_{term}"] = torch.stack([g.float().norm() for g in grads]).norm()
    if "llike" in losses:  # only the models that compare Dis_l; the GAN's layer l is just a layer
        out["diag/layer_l_norm"] = nets.dis.layer_l.weight.detach().float().norm()
    return out


# ----------------------------------------------------------------------------------------------
# a run

def training_loop(run_dir, resume=False, progress=True, time_limit=None, **settings):
    """Train one model into `run_dir` (see labkit.options for the settings); returns the folder.
    With `time_limit` (seconds), stop at the first logged step after it with a checkpoint: a
    long run can go on in short sessions (resume=True), as on GPU machines had for minutes."""
    o = options(**settings)
    deadline = None if time_limit is None else time.time() + time_limit
    run = Run(run_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    rank, world = distributed()
    # Under torchrun only rank 0 writes into the run folder, so only it takes the lock.
    with run.lock() if rank == 0 else contextlib.nullcontext():
        for rollback in range(MAX_ROLLBACKS + 1):
            try:
                train_run(run, o, resume, progress, deadline)
            except Diverged as e:
                if o["on_nan"] != "rollback" or rollback == MAX_ROLLBACKS or not run.checkpoint.is_file():
                    raise
                o = dict(o, lr=o["lr"] / 2)
                resume = True
                run.log(str(e))
                run.log(f"rolling back to the last checkpoint with lr {o['lr']:g}")
            else:
                # Only after success: leaving while another rank waits in a collective would hang it.
                leave(world)
                return run.path


@dataclass
class Training:
    """What a run's steps work with, complete once `setup` returns."""
    device: torch.device
    shard: tuple                # (rank, world size): this process's share of every batch
    local: int                  # this process's images per step
    writer: bool                # rank 0 writes the run folder
    images: torch.Tensor        # the training set, uint8 on the device
    labels: torch.Tensor | None  # a conditional model's: the training faces' attributes (+-1) on the device
    note: str                   # what the data is, for the log
    faces: torch.Tensor         # the fixed faces every grid reconstructs
    face_labels: torch.Tensor | None  # their attributes (conditional), which the grid's samples are drawn for
    steps_per_epoch: int
    total: int                  # the run's last step
    nets: Nets
    ema: Nets | None            # the average of the encoder and decoder (option ema), else None
    opts: dict                  # network name -> its optimizer
    generator: torch.Generator  # every random draw of training: noise, augmentation
    fast: bool                  # bf16 autocast, channels-last (and compiled on a GPU)
    deadline: float | None      # time.time() at which to stop with a checkpoint (time_limit)
    step: int = 0               # the first step: 0, or the resumed checkpoint's
    seconds: float = 0.0        # wall time the run spent before this session


def train_run(run, o, resume, progress, deadline=None):
    """One attempt at the run: set up (or restore), record the settings (a conditional run's with
    the attributes it is conditioned on), run the steps."""
    condition = conditioning(o["data"]) if spec(o["model"]).conditional else None
    if condition is not None:
        o = dict(o, attributes=condition[0])
    t = setup(run, o, resume, deadline, condition)
    if t.step >= t.total and t.step == run.options().get("steps"):
        return  # a finished run resumed as it was recorded: nothing to train, its record stays the one that trained it
    if t.writer:
        run.write_options(dict(o, device=str(t.device), fast=t.fast, data_used=t.note, steps=t.total,
                               processes=t.shard[1], provenance=provenance(t.device)))
        run.truncate_stats(t.step)
        run.log(f"{t.nets.spec.title} on {t.device}; data: {t.note}", console=progress)
        if D.resolve_data(o["data"]) is None:
            run.log(D.GET_CELEBA, console=progress)
    run_steps(run, o, t, progress and t.writer)


def setup(run, o, resume, deadline=None, condition=None):
    """Device, data, networks, optimizers and noise of a run, restored from its checkpoint when
    resuming; `condition`: a conditional run's attributes (see conditioning)."""
    if run.checkpoint.is_file() and not resume:
        raise LabkitError(f"{run.path}: already holds a run; pass --resume to continue it or choose another folder")
    rank, world = distributed()
    if o["batch"] % world:
        raise LabkitError(f"batch {o['batch']} does not split over {world} processes")
    device = local_device(resolve_device(o["device"]), world)
    images, note = D.training_set(o["data"], o["limit"], device)
    labels = face_labels = None
    if condition is not None:
        _, train_labels, face_labels = condition
        labels = train_labels[:len(images)].to(device)
    train_path = D.resolve_data(o["data"])
    if train_path is not None:
        note += f"; grid faces from {D.holdout_path(train_path) or train_path}"
    steps_per_epoch = len(images) // o["batch"]
    if steps_per_epoch == 0:
        raise LabkitError(f"batch {o['batch']} is larger than the training set ({len(images)} images)")
    torch.manual_seed(o["seed"])
    nets = Nets.of(o)
    if o["sync_bn"] and world > 1:
        nets = torch.nn.SyncBatchNorm.convert_sync_batchnorm(nets)
    fast = native_bf16(device) if o["fast"] is None else o["fast"]
    nets = accelerate(nets.to(device), device, fast, o["compile"])
    ema = None
    if o["ema"]:  # whole networks, so grids draw from it as from the live ones; its D never moves
        ema = Nets.of(o).to(device).requires_grad_(False)
        ema.load_state_dict(nets.state_dict())
    t = Training(device=device, shard=(rank, world), local=o["batch"] // world, writer=rank == 0, images=images,
                 labels=labels, note=note, faces=D.grid_faces(train_path, N_GRID), face_labels=face_labels,
                 steps_per_epoch=steps_per_epoch,
                 total=steps_per_epoch * o["epochs"], nets=nets, ema=ema, opts=make_optimizers(nets, o, device),
                 generator=torch.Generator(device).manual_seed(o["seed"]), fast=fast, deadline=deadline)
    if resume and run.checkpoint.is_file():
        t.step = restore(run, o, t)
        # Wall time counts on from the resumed checkpoint's, so a run's last row says what it cost.
        t.seconds = next((r["seconds"] for r in reversed(run.stats()) if "seconds" in r), 0.0)
    return t


def conditioning(data):
    """(attribute names, the training faces' attributes, the grid faces' attributes) a conditional
    run trains with: CelebA's, or a one-line error naming what is missing."""
    found = D.attribute_split(data)
    if found is None:
        raise LabkitError("a conditional model trains on CelebA's attributes: it needs celeba64.h5 (--data or "
                          "LABKIT_DATA) with list_attr_celeba*.txt beside it")
    names, train, held = found
    return names, train, (held if len(held) else train)[:N_GRID]


def restore(run, o, t):
    """Load the run's checkpoint into the fresh networks and optimizers; returns its step."""
    state = load_checkpoint(run.checkpoint)
    saved = state["options"]
    clash = [f"{k}={saved[k]!r} (now {o[k]!r})" for k in ("model", "latent", "width", "batch", "seed", "limit")
             if saved.get(k) != o[k]]
    if clash:
        raise LabkitError(f"{run.checkpoint}: cannot resume with different settings: {', '.join(clash)}")
    load_weights(t.nets, state["nets"], run.checkpoint)
    if t.ema is not None:  # a run that kept no average starts one from the weights it resumes
        load_weights(t.ema, {**state["nets"], **state.get("ema", {})}, run.checkpoint)
    for k, opt in t.opts.items():
        opt.load_state_dict(state["opts"][k])
    t.generator.set_state(state["rng"])
    return state["step"]


def run_steps(run, o, t, progress):
    """The loop: from step t.step to t.total (or the deadline), one batch a step."""
    from tqdm import tqdm
    noise = D.fixed_noise(o["latent"]).to(t.device)
    window, order, t0, step = [], None, time.time() - t.seconds, t.step
    # To the process's own stderr: the terminal of `python -m labkit train`, and under papermill
    # the console of `make report` (ipykernel also shows it in the notebook, never in the report).
    bar = tqdm(total=t.total, initial=step, desc=o["model"], unit="step", disable=not progress, dynamic_ncols=True,
               file=sys.__stderr__, mininterval=2)
    while step < t.total:
        epoch, i = divmod(step, t.steps_per_epoch)
        if i == 0 or order is None:
            order = D.epoch_order(len(t.images), epoch, o["seed"]).to(t.device)
        start = i * o["batch"] + t.shard[0] * t.local
        rows = order[start:start + t.local]
        x = D.to_float(t.images[rows])
        if o["augment"]:
            x = augment(x, t.generator, t.shard)
        set_lr(t.opts, o, step, t.total)
        window.append(train_step(t.nets, t.opts, x, t.generator, o, autocast=t.fast, shard=t.shard,
                                 diagnose=(step + 1) % o["log_every"] == 0,
                                 y=None if t.labels is None else t.labels[rows]))
        step += 1
        if t.ema is not None:
            update_ema(t.ema, t.nets, step, o)
        bar.update(1)
        if step % o["log_every"] == 0 or step % t.steps_per_epoch == 0 or is_snapshot(step, o, t):
            # The step's only host sync: losses are checked before any checkpoint is written,
            # so a checkpoint never holds a diverged model.
            out_of_time = t.deadline is not None and time.time() > t.deadline
            row, stop = log_row(window, step, o, t, time.time() - t0, out_of_time)
            window = []
            maintain(run, o, t, step, row, noise, bar, snapshot=stop or is_snapshot(step, o, t))
            if stop:
                run.log(f"time limit reached at step {step} of {t.total}: checkpoint written, continue with --resume",
                        console=progress)
                break
    bar.close()


def is_snapshot(step, o, t):
    # Not at every epoch end: a full-size checkpoint is ~1 GB, and an epoch of the 8,000
    # training faces lasts seconds on a GPU.
    return step % o["ckpt_every"] == 0 or step == t.total


def maintain(run, o, t, step, row, noise, bar, snapshot):
    """What happens on a logged step: check, write the stats line, checkpoint, draw the grid."""
    # Losses are computed before the update: a non-finite gradient in this step shows only in
    # the weights, so they are checked too before they are kept. Every rank checks (the
    # weights are the same on all), so all stop together.
    if snapshot and not torch.stack([p.isfinite().all() for p in t.nets.parameters()]).all():
        raise diverged(step, "the weights became non-finite")
    if not t.writer:
        return
    run.append_stats(row)
    bar.set_postfix({k[5:]: f"{v:.3g}" for k, v in row.items() if k.startswith("loss/")})
    if snapshot:
        run.save(t.nets, t.opts, step, t.generator, o, t.ema)
    if step % t.steps_per_epoch == 0:
        epoch = step // t.steps_per_epoch
        earlier = {r["epoch"]: r["sample_diversity"] for r in run.stats() if "sample_diversity" in r}
        grid = run.grids / f"epoch-{epoch:04d}.png"
        spread = write_grid(t.nets if t.ema is None else t.ema, t.faces.to(t.device), noise, grid, t.face_labels)
        run.append_stats({"step": step, "epoch": epoch, "sample_diversity": round(spread, 4)})
        best = max(earlier, key=earlier.get, default=None)
        if spread < COLLAPSE_RATIO:
            run.log(f"warning: mode collapse? samples of different noise vectors differ {spread:.0%} "
                    f"as much as real faces do (epoch {epoch})")
        elif best is not None and spread < BREAKDOWN_RATIO * earlier[best]:
            run.log(f"warning: samples broke down? their spread fell to {spread:.0%} of real faces' "
                    f"from {earlier[best]:.0%} at epoch {best} (epoch {epoch}); compare {grid.name} with "
                    f"epoch-{best:04d}.png before using this run")


def log_row(window, step, o, t, seconds, stop=False):
    """(row, stop): mean losses and diagnostics of the steps since the last row, over all ranks,
    and whether any rank asks to stop (all then stop at the same step). A non-finite loss
    raises Diverged naming its first step."""
    keys = dict.fromkeys(k for w in window for k in w)  # diagnostics come on some steps only
    stacked = {k: torch.stack([w[k] for w in window if k in w]).float() for k in keys}
    stacked["stop"] = torch.tensor([float(stop)], device=stacked[next(iter(keys))].device)
    stacked = {k: v.cpu() for k, v in mean_over_ranks(stacked, t.shard[1]).items()}
    stop = stacked.pop("stop").item() > 0
    bad = [(int((~torch.isfinite(v)).nonzero()[0]), k) for k, v in stacked.items()
           if "/" not in k and not torch.isfinite(v).all()]  # losses, one per step; not diagnostics
    if bad:
        first, key = min(bad)
        raise diverged(step - len(window) + first + 1, f"loss {key} is {stacked[key][first].item()}")
    row = {"step": step, "epoch": round(step / t.steps_per_epoch, 4), "kimg": step * o["batch"] / 1000,
           "seconds": round(seconds, 2)}
    row.update({k if "/" in k else f"loss/{k}": v.mean().item() for k, v in stacked.items()})
    return row, stop


def write_grid(nets, faces, noise, path, y=None):
    """Reconstructions of the fixed faces (rows: original, reconstruction) beside fixed-noise
    samples (a conditional model's drawn for the faces' attributes y, in turn). Returns the
    samples' diversity relative to the faces'."""
    with eager():
        return _write_grid(nets, faces, noise, path, y)


def _write_grid(nets, faces, noise, path, y):
    was_training = nets.training
    nets.eval()
    samples = nets.decode(noise, None if y is None else y[torch.arange(len(noise)) % len(y)])
    spread = diversity(samples) / max(diversity(faces.cpu()), 1e-8)
    parts = [plots.grid(samples)]
    if nets.has_encoder:
        # 32 faces as 4 original/reconstruction row pairs: as tall as the 8x8 sample grid.
        faces, y = faces[:N_GRID // 2], None if y is None else y[:N_GRID // 2]
        parts.insert(0, plots.grid(plots.interleave(faces.cpu(), nets.decode(nets.encode(faces, y), y))))
    gap = np.full((parts[0].shape[0], 8, 3), 255, np.uint8)
    plots.save_png(np.concatenate([p for part in parts for p in (part, gap)][:-1], axis=1), path)
    nets.train(was_training)
    return spread
