"""One training loop for the VAE (hw2), the GAN (hw3) and the VAE-GAN (Algorithm 1).

A run folder holds options.json (every setting), stats.jsonl (losses every `log_every` steps),
grids/epoch-NNNN.png (reconstructions of fixed held-out faces and samples of fixed noise) and
checkpoint.pt (weights, optimizer and RNG state; loadable with torch.load(weights_only=True)).
"""
import contextlib
import fcntl
import json
import math
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from labkit import LabkitError, data as D, plots
from labkit.losses import D_WEIGHTS, DEC_BATCHES, G_LOSSES, compute_losses
from labkit.models import INITS, MODELS, Nets, init_weights

# Smoke: a width-1/8 network on a small set, minutes on a CPU. Full: the handout's settings.
PROFILES = {
    "smoke": dict(width=0.125, latent=128, epochs=4, batch=32, limit=2048, log_every=10, ckpt_every=100),
    "full": dict(width=1.0, latent=2048, epochs=100, batch=64, limit=None, log_every=50, ckpt_every=1000),
}
OPTIMIZERS = ("rmsprop", "adam")
ON_NAN = ("stop", "rollback")
MAX_ROLLBACKS = 3
# Samples of the fixed noise this much less spread than real faces trigger the collapse warning.
COLLAPSE_RATIO = 0.15
# The authors' equilibrium: D's mean cost -log D(x) on real and -log(1 - D(x)) on fakes is
# ln 2 = 0.69 when D cannot tell them apart; 0.68 is their centre for the margin.
EQUILIBRIUM = 0.68
LOSS_SETTINGS = ("beta", "gamma", "g_loss", "d_weights", "recon_fake", "feature_norm", "dec_batch")
GRID_SEED = 1234  # fixed noise and fixed faces: every model's grids show the same inputs
N_GRID = 64


def options(**overrides):
    """Every setting of a run: the handout's defaults, a profile's, then the caller's."""
    opts = dict(
        model="vaegan",          # vae (hw2), gan (hw3) or vaegan
        profile="full",          # smoke | full: sets the size and length below unless given
        data=None,               # training HDF5 or a folder holding celeba64.h5; None: LABKIT_DATA, else synthetic
        epochs=100,              # handout: 100
        batch=64,                # handout: 64
        lr=3e-4,                 # handout: 3e-4, for every network
        optimizer="rmsprop",     # the paper's RMSProp, or adam (betas 0.5, 0.999)
        beta=1.0,                # weight of the KL prior term
        gamma=5.0,               # handout: weight of L_llike against the GAN loss in the decoder's update
        g_loss="nonsaturating",  # generator loss: nonsaturating -log D(G(z)) or saturating log(1 - D(G(z)))
        d_weights="sum",         # D loss: sum (Algorithm 1: real + each fake batch) or half (authors: 0.5 real, 0.5 mean of fakes)
        recon_fake=True,         # D sees reconstructions as fakes (Algorithm 1); False: prior samples only (authors' CelebA script)
        feature_norm=False,      # L_llike divided by the mean square of Dis_l(x): immune to the growth of layer l's weights
        dec_batch="split",       # split: decode reconstructions and prior samples separately; joint: one batch (shared BN statistics)
        margin=None,             # the authors' equilibrium rule (e.g. 0.35 around 0.68): skip D or decoder updates; None: off
        lr_decay=1.0,            # lr falls exponentially to lr * lr_decay at the last step; 1: constant
        weight_decay=0.0,        # on every weight (the authors: 1e-5)
        init="normal",           # normal: DCGAN's N(0, 0.02); glorot: Glorot-normal (the authors' deeppy AutoFiller)
        latent=2048,             # handout: 2048
        width=1.0,               # channel multiplier; 1 = the handout's tables
        limit=None,              # train on the first N images only
        seed=0,
        device="auto",           # auto: cuda when present, else cpu
        fast=None,               # bf16 autocast + torch.compile; None: on for cuda, off for cpu
        log_every=50,            # steps between stats lines (and the only host syncs of a step)
        ckpt_every=1000,         # steps between checkpoints; also one at every epoch end
        on_nan="stop",           # stop: keep the last good checkpoint and exit; rollback: reload it, halve lr, go on
        sync_bn=False,           # under torchrun on GPUs: BatchNorm statistics over the global batch
    )
    profile = overrides.get("profile") or opts["profile"]
    if profile not in PROFILES:
        raise LabkitError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    opts.update(PROFILES[profile])
    opts.update({k: v for k, v in overrides.items() if v is not None})
    check_options(opts)
    return opts


def check_options(o):
    """Every bad setting as one line, before any work starts."""
    problems = []
    if o["model"] not in MODELS:
        problems.append(f"unknown model {o['model']!r}; choose one of {', '.join(MODELS)}")
    if o["g_loss"] not in G_LOSSES:
        problems.append(f"unknown generator loss {o['g_loss']!r}; choose one of {', '.join(G_LOSSES)}")
    for key, allowed in (("d_weights", D_WEIGHTS), ("dec_batch", DEC_BATCHES), ("init", INITS)):
        if o[key] not in allowed:
            problems.append(f"{key} must be one of {', '.join(allowed)}, got {o[key]!r}")
    for key in ("recon_fake", "feature_norm"):
        if not isinstance(o[key], bool):
            problems.append(f"{key} must be true or false, got {o[key]!r}")
    if o["margin"] is not None and not (isinstance(o["margin"], (int, float)) and 0 < o["margin"] < EQUILIBRIUM):
        problems.append(f"margin must be in (0, {EQUILIBRIUM}) or None, got {o['margin']!r}")
    if o["optimizer"] not in OPTIMIZERS:
        problems.append(f"unknown optimizer {o['optimizer']!r}; choose one of {', '.join(OPTIMIZERS)}")
    for key in ("epochs", "batch", "latent", "log_every", "ckpt_every"):
        if not isinstance(o[key], int) or o[key] <= 0:
            problems.append(f"{key} must be a positive integer, got {o[key]!r}")
    if o["limit"] is not None and (not isinstance(o["limit"], int) or o["limit"] <= 0):
        problems.append(f"limit must be a positive integer, got {o['limit']!r}")
    for key, low, high in (("lr", 0, 1), ("width", 0, 4), ("beta", 0, 1e4), ("gamma", 0, 1e4), ("lr_decay", 0, 1)):
        value = o[key]
        if not isinstance(value, (int, float)) or not math.isfinite(value) or not low < value <= high:
            problems.append(f"{key} must be in ({low}, {high}], got {value!r}")
    if not (isinstance(o["weight_decay"], (int, float)) and 0 <= o["weight_decay"] < 1):
        problems.append(f"weight_decay must be in [0, 1), got {o['weight_decay']!r}")
    if o["on_nan"] not in ON_NAN:
        problems.append(f"on_nan must be one of {', '.join(ON_NAN)}, got {o['on_nan']!r}")
    if o["device"] not in ("auto", "cpu") and not str(o["device"]).startswith("cuda"):
        problems.append(f"device must be auto, cpu or cuda[:N], got {o['device']!r}")
    if problems:
        raise LabkitError("; ".join(problems))


def resolve_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LabkitError(f"device {name} asked for, but torch sees no CUDA GPU")
    return torch.device(name)


def training_data(o, device):
    """(train images, grid faces) as uint8 tensors, and a line saying what the data is."""
    path = D.resolve_data(o["data"])
    faces = D.grid_faces(path, N_GRID)
    if path is None:
        images = torch.from_numpy(D.synthetic_images(o["limit"] or 4096, seed=0)).to(device)
        return images, faces, f"synthetic faces ({len(images)} images; no CelebA found)"
    images = D.load_images(path, device, o["limit"])
    return images, faces, f"{path} ({len(images)} images; grid faces from {D.holdout_path(path) or path})"


def make_optimizers(nets, o, device):
    opts = {}
    for name in ("enc", "dec", "dis"):
        if hasattr(nets, name):
            params = getattr(nets, name).parameters()
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


def train_step(nets, opts, x, generator, o, autocast=False, shard=(0, 1), diagnose=False):
    """One update of every network. All gradients are taken at the same parameters, then all
    optimizers step, as in Algorithm 1 (stepping one network before another's backward on the
    same graph is what breaks older ports on modern PyTorch). `diagnose` adds the decoder's
    gradient norm from each of its terms (two more backward passes: only on logged steps)."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
        losses, objectives = compute_losses(nets, x, generator, shard=shard, **{k: o[k] for k in LOSS_SETTINGS})
    diag = decoder_gradients(nets, losses, o["gamma"]) if diagnose and hasattr(nets, "dis") else {}
    for opt in opts.values():
        opt.zero_grad(set_to_none=True)
    backward_routed(nets, objectives)
    if shard[1] > 1:
        average_gradients(nets, shard[1])
    stepping = updated(opts, losses, o["margin"])
    for name in stepping:
        opts[name].step()
    if o["margin"] is not None:
        diag.update({f"diag/updates_{k}": torch.tensor(float(k in stepping)) for k in ("dec", "dis")})
    return {**{k: v.detach() for k, v in losses.items()}, **diag}


def updated(opts, losses, margin):
    """The networks that step. The equilibrium rule (the authors' code) freezes D while it wins
    by more than `margin` on real or fake images, and the decoder while it loses by more; the
    encoder always steps. It reads the costs on the host: one sync per step when it is on."""
    if margin is None or "diag/cost_real" not in losses:
        return list(opts)
    costs = (losses["diag/cost_real"].item(), losses["diag/cost_fake"].item())
    dis = not any(c < EQUILIBRIUM - margin for c in costs)
    dec = not any(c > EQUILIBRIUM + margin for c in costs)
    if not (dis or dec):
        dis = dec = True
    return [k for k in opts if k == "enc" or (k == "dis" and dis) or (k == "dec" and dec)]


def set_lr(opts, o, step, total):
    """Exponential decay from lr to lr * lr_decay at the last step: a function of the step
    alone, so a resumed run follows the same schedule."""
    lr = o["lr"] * o["lr_decay"] ** (step / max(total - 1, 1))
    for opt in opts.values():
        for group in opt.param_groups:
            group["lr"] = lr


def decoder_gradients(nets, losses, gamma):
    """How hard each term pulls the decoder (the VAE-GAN's balance is invisible in the losses):
    gradient norms of gamma * L_llike and of the generator loss, and the norm of layer l's
    weights, on which the size of L_llike depends."""
    params = [p for p in nets.dec.parameters() if p.requires_grad]
    terms = {"feature": gamma * losses["llike"]} if "llike" in losses else {}
    terms["gan"] = losses["g"]
    out = {}
    for name, term in terms.items():
        grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        out[f"diag/dec_grad_{name}"] = torch.stack([g.float().norm() for g in grads if g is not None]).norm()
    out["diag/layer_l_norm"] = nets.dis.layer_l.weight.detach().float().norm()
    return out


def distributed():
    """(rank, world size) under torchrun, after joining its process group; (0, 1) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def average_gradients(nets, world):
    """Mean gradient over ranks, as one flat all-reduce: each rank's losses are means over
    equal shards, so this is the gradient of the global batch."""
    grads = [p.grad for p in nets.parameters() if p.grad is not None]
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except OSError:
        return None


# ----------------------------------------------------------------------------------------------
# checkpoints

def save_checkpoint(path, nets, opts, step, generator, o):
    """Write to a temporary file, fsync, then rename: a crash leaves the old or the new file."""
    state = {
        "nets": nets.state_dict(),
        "opts": {k: v.state_dict() for k, v in opts.items()},
        "step": step,
        "rng": generator.get_state(),
        "options": json.dumps(o),
        "labkit": 1,
    }
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path, device="cpu"):
    """weights_only: a checkpoint from anyone can be opened without running its code."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise LabkitError(f"{path}: no checkpoint (train first, or check the run folder)")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # torch raises several types for foreign, truncated or unsafe files
        raise LabkitError(f"{path}: not a loadable labkit checkpoint ({str(e).splitlines()[0]})") from None
    if not isinstance(state, dict) or state.get("labkit") != 1:
        raise LabkitError(f"{path}: not a labkit checkpoint")
    state["options"] = json.loads(state["options"])
    return state


def load_nets(run, device="cpu"):
    """A trained run's networks in eval mode, and its options."""
    state = load_checkpoint(run, device)
    o = state["options"]
    nets = Nets(o["model"], o["latent"], o["width"]).to(device)
    load_weights(nets, state["nets"], run)
    return nets.eval(), o


def load_weights(nets, weights, source):
    try:
        nets.load_state_dict(weights)
    except RuntimeError as e:
        first = [line.strip() for line in str(e).splitlines()[1:2]]
        raise LabkitError(f"{source}: weights do not fit a {nets.model} of this size "
                          f"(check --model/--latent/--width): {' '.join(first)}") from None


@contextlib.contextmanager
def run_lock(run_dir):
    """One process per run folder. flock is released by the kernel even after kill -9."""
    handle = open(Path(run_dir) / ".lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise LabkitError(f"{run_dir}: another process is training into this run folder") from None
    try:
        yield
    finally:
        handle.close()


# ----------------------------------------------------------------------------------------------
# the loop

def diversity(images_u8):
    """Mean pairwise distance between images (pixels in [0, 1]): near 0 when samples collapse."""
    x = images_u8.float().flatten(1) / 255
    return torch.pdist(x).mean().item() / x.shape[1] ** 0.5


def write_grid(nets, faces, noise, path):
    """Reconstructions of the fixed faces (rows: original, reconstruction) beside fixed-noise
    samples. Returns the samples' diversity relative to the faces'."""
    was_training = nets.training
    nets.eval()
    samples = D.to_uint8(nets.sample(noise)).cpu()
    spread = diversity(samples) / max(diversity(faces.cpu()), 1e-8)
    parts = [plots.grid(samples)]
    if hasattr(nets, "enc"):
        # 32 faces as 4 original/reconstruction row pairs: as tall as the 8x8 sample grid.
        faces = faces[:N_GRID // 2]
        recon = D.to_uint8(nets.reconstruct(D.to_float(faces))).cpu()
        parts.insert(0, plots.grid(plots.interleave(faces.cpu(), recon)))
    gap = np.full((parts[0].shape[0], 8, 3), 255, np.uint8)
    plots.save_png(np.concatenate([p for part in parts for p in (part, gap)][:-1], axis=1), path)
    nets.train(was_training)
    return spread


def fixed_noise(latent, n=N_GRID):
    return torch.randn(n, latent, generator=torch.Generator().manual_seed(GRID_SEED))


def training_loop(run_dir, resume=False, progress=True, **kwargs):
    """Train one model into `run_dir`; returns the run folder. See `options` for the settings."""
    o = options(**kwargs)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rank, _ = distributed()
    # Under torchrun only rank 0 writes into the run folder, so only it takes the lock.
    with run_lock(run_dir) if rank == 0 else contextlib.nullcontext():
        for rollback in range(MAX_ROLLBACKS + 1):
            try:
                return _train(run_dir, o, resume, progress)
            except Diverged as e:
                if o["on_nan"] != "rollback" or rollback == MAX_ROLLBACKS or not (run_dir / "checkpoint.pt").is_file():
                    raise
                o = dict(o, lr=o["lr"] / 2)
                resume = True
                print(f"[labkit] {e}\n[labkit] rolling back to the last checkpoint with lr {o['lr']:g}", flush=True)


def _train(run_dir, o, resume, progress):
    from tqdm import tqdm
    rank, world = distributed()
    if o["batch"] % world:
        raise LabkitError(f"batch {o['batch']} does not split over {world} processes")
    shard, local = (rank, world), o["batch"] // world
    device = resolve_device(o["device"])
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    writer = rank == 0
    progress = progress and writer
    fast = device.type == "cuda" if o["fast"] is None else o["fast"]
    images, faces, data_note = training_data(o, device)
    steps_per_epoch = len(images) // o["batch"]
    if steps_per_epoch == 0:
        raise LabkitError(f"batch {o['batch']} is larger than the training set ({len(images)} images)")
    total = steps_per_epoch * o["epochs"]

    torch.manual_seed(o["seed"])
    nets = Nets(o["model"], o["latent"], o["width"])
    nets.apply(lambda m: init_weights(m, o["init"]))
    if o["sync_bn"] and world > 1:
        nets = torch.nn.SyncBatchNorm.convert_sync_batchnorm(nets)
    nets = nets.to(device)
    opts = make_optimizers(nets, o, device)
    generator = torch.Generator(device).manual_seed(o["seed"])
    step, ckpt = 0, run_dir / "checkpoint.pt"
    if resume and ckpt.is_file():
        state = load_checkpoint(ckpt, device)
        saved = state["options"]
        clash = [f"{k}={saved[k]!r} (now {o[k]!r})" for k in ("model", "latent", "width", "batch", "seed", "limit")
                 if saved.get(k) != o[k]]
        if clash:
            raise LabkitError(f"{ckpt}: cannot resume with different settings: {', '.join(clash)}")
        load_weights(nets, state["nets"], ckpt)
        for k, opt in opts.items():
            opt.load_state_dict(state["opts"][k])
            for group in opt.param_groups:  # a new --lr (or a rollback's) applies on resume
                group["lr"] = o["lr"]
        generator.set_state(state["rng"])
        step = state["step"]
    elif ckpt.is_file():
        raise LabkitError(f"{run_dir}: already holds a run; pass --resume to continue it or choose another folder")

    o_record = dict(o, device=str(device), fast=fast, data_used=data_note, steps=total, processes=world,
                    torch=torch.__version__, commit=git_commit())
    if writer:
        (run_dir / "options.json").write_text(json.dumps(o_record, indent=2) + "\n")
        _truncate_stats(run_dir / "stats.jsonl", step)
    if progress:
        print(f"[labkit] {MODELS[o['model']]['title']} on {device}; data: {data_note}")
        if D.resolve_data(o["data"]) is None:
            print(f"[labkit] {D.GET_CELEBA}")

    if fast:
        for module in nets.children():
            module.compile()  # in place: state_dict keys stay those of the plain modules
    noise = fixed_noise(o["latent"]).to(device)
    window, order, t0 = [], None, time.time()
    bar = tqdm(total=total, initial=step, desc=o["model"], unit="step", disable=not progress, dynamic_ncols=True)
    with open(run_dir / "stats.jsonl", "a") if writer else contextlib.nullcontext() as stats:
        while step < total:
            epoch, i = divmod(step, steps_per_epoch)
            if i == 0 or order is None:
                order = D.epoch_order(len(images), epoch, o["seed"]).to(device)
            start = i * o["batch"] + rank * local
            idx = order[start:start + local]
            set_lr(opts, o, step, total)
            diagnose = (step + 1) % o["log_every"] == 0
            window.append(train_step(nets, opts, D.to_float(images[idx]), generator, o, autocast=fast, shard=shard,
                                     diagnose=diagnose))
            step += 1
            bar.update(1)
            epoch_end = step % steps_per_epoch == 0
            save = step % o["ckpt_every"] == 0 or epoch_end or step == total
            if save or step % o["log_every"] == 0:
                # The step's only host sync: losses are checked before any checkpoint is written,
                # so a checkpoint never holds a diverged model.
                row = _log_row(window, step, steps_per_epoch, o, time.time() - t0, world)
                window = []
                # Losses are computed before the update: a non-finite gradient in this step shows
                # only in the weights, so they are checked too before they are kept. Every rank
                # checks (the weights are the same on all), so all stop together.
                if save and not torch.stack([p.isfinite().all() for p in nets.parameters()]).all():
                    raise Diverged(f"training diverged at step {step}: the weights became non-finite; "
                                   f"the last good checkpoint is kept, continue it with --resume and a lower --lr")
                if not writer:
                    continue
                stats.write(json.dumps(row) + "\n")
                stats.flush()
                bar.set_postfix({k[5:]: f"{v:.3g}" for k, v in row.items() if k.startswith("loss/")})
                if save:
                    save_checkpoint(ckpt, nets, opts, step, generator, o)
                if epoch_end:
                    spread = write_grid(nets, faces.to(device), noise, run_dir / "grids" / f"epoch-{step // steps_per_epoch:04d}.png")
                    stats.write(json.dumps({"step": step, "epoch": step // steps_per_epoch, "sample_diversity": round(spread, 4)}) + "\n")
                    stats.flush()
                    if spread < COLLAPSE_RATIO:
                        print(f"[labkit] warning: mode collapse? samples of different noise vectors differ {spread:.0%} "
                              f"as much as real faces do (epoch {step // steps_per_epoch})", flush=True)
    bar.close()
    return run_dir


class Diverged(LabkitError):
    pass


def _log_row(window, step, steps_per_epoch, o, seconds, world=1):
    """Mean losses of the steps since the last row (over all ranks); a non-finite one names its first step."""
    keys = dict.fromkeys(k for w in window for k in w)  # diagnostics come on some steps only
    stacked = {k: torch.stack([w[k] for w in window if k in w]).float() for k in keys}
    if world > 1:
        flat = torch.stack(list(stacked.values()))
        dist.all_reduce(flat)
        stacked = dict(zip(stacked, flat / world))
    stacked = {k: v.cpu() for k, v in stacked.items()}
    finite = {k: torch.isfinite(v) for k, v in stacked.items() if len(v) == len(window)}
    if not all(f.all() for f in finite.values()):
        first = min((int((~f).nonzero()[0]), k) for k, f in finite.items() if not f.all())
        raise Diverged(f"training diverged at step {step - len(window) + first[0] + 1}: loss {first[1]} is "
                       f"{stacked[first[1]][first[0]].item()}; the last good checkpoint is kept, "
                       f"continue it with --resume and a lower --lr")
    row = {"step": step, "epoch": round(step / steps_per_epoch, 4), "kimg": step * o["batch"] / 1000,
           "seconds": round(seconds, 2)}
    row.update({k if "/" in k else f"loss/{k}": v.mean().item() for k, v in stacked.items()})
    return row


def _truncate_stats(path, step):
    """Keep only the lines up to the checkpoint being resumed (and drop a torn last line)."""
    rows = [r for r in plots.read_stats(path.parent) if r["step"] <= step] if path.is_file() else []
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
