"""The run folder, and everything that reads or writes it.

    options.json    every setting of the run, with its provenance (device, torch, commit)
    stats.jsonl     one JSON line per `log_every` steps (losses, diagnostics) and per epoch
    log.txt         what the run said, with times
    grids/          epoch-NNNN.png: fixed held-out faces reconstructed, fixed noise sampled
    reconstructions.npz  the held-out faces' reconstructions its evaluation scored (VAE, VAE-GAN)
    checkpoint.pt   weights (and their average, option ema), optimizer and RNG state; opens with
                    torch.load(weights_only=True)
    .lock           held by the process training into the folder
"""
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from labkit import LabkitError, data as D
from labkit.models import AVERAGED, MODELS, Nets


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except OSError:
        return None


def device_name(device=None):
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def provenance(device=None):
    """Where a number came from: the code, the libraries and the machine."""
    return dict(commit=git_commit(), torch=torch.__version__, python=platform.python_version(),
                device=device_name(device))


class Run:
    def __init__(self, path):
        self.path = Path(path)
        self.checkpoint = self.path / "checkpoint.pt"
        self.grids = self.path / "grids"
        self.reconstructions = self.path / "reconstructions.npz"

    # options and provenance
    def write_options(self, record):
        (self.path / "options.json").write_text(json.dumps(record, indent=2) + "\n")

    def options(self):
        path = self.path / "options.json"
        if not path.is_file():
            raise LabkitError(f"{self.path}: no options.json (not a run folder, or never trained)")
        return json.loads(path.read_text())

    # stats
    def stats(self):
        """stats.jsonl as a list of dicts; a torn last line (a crash mid-write) is skipped."""
        rows, path = [], self.path / "stats.jsonl"
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return rows

    def append_stats(self, row):
        with open(self.path / "stats.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def truncate_stats(self, step):
        """Keep only the lines up to the checkpoint being resumed (and drop a torn last line)."""
        rows = [r for r in self.stats() if r["step"] <= step]
        (self.path / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def log(self, message, console=True):
        """A line in log.txt, and on the console (stderr: in a notebook, not part of the
        report) unless told otherwise."""
        with open(self.path / "log.txt", "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
        if console:
            print(f"[labkit] {message}", file=sys.stderr, flush=True)

    # checkpoints
    def save(self, nets, opts, step, generator, o, ema=None):
        """Write to a temporary file, fsync, then rename: a crash leaves the old or the new file."""
        state = {
            "nets": nets.state_dict(),
            **({"ema": averaged_weights(ema)} if ema is not None else {}),
            "opts": {k: v.state_dict() for k, v in opts.items()},
            "step": step,
            "rng": generator.get_state(),
            "options": json.dumps(o),
            "labkit": 1,
        }
        tmp = Path(str(self.checkpoint) + ".tmp")
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.checkpoint)

    # the evaluation's reconstructions: they travel where the checkpoint (~1 GB at full size) cannot
    def keep_reconstructions(self, images_u8, faces_u8):
        tmp = self.path / "reconstructions.tmp.npz"
        np.savez_compressed(tmp, images=images_u8.numpy(), digests=_digests(faces_u8))
        os.replace(tmp, self.reconstructions)

    def kept_reconstructions(self, faces_u8):
        """The kept reconstructions of these faces (the same images, in order; the first ones of a
        longer or a cut list do), else None."""
        if not self.reconstructions.is_file():
            return None
        with np.load(self.reconstructions) as kept:
            if "digests" not in kept or len(kept["digests"]) < len(faces_u8):
                return None
            same = np.array_equal(kept["digests"][:len(faces_u8)], _digests(faces_u8))
            return torch.from_numpy(kept["images"][:len(faces_u8)]) if same else None

    @contextlib.contextmanager
    def lock(self):
        """One process per run folder. flock is released by the kernel even after kill -9."""
        handle = open(self.path / ".lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise LabkitError(f"{self.path}: another process is training into this run folder") from None
        try:
            yield
        finally:
            handle.close()


def _digests(images_u8):
    """One short digest per image: which faces a list of reconstructions is of."""
    return np.array([hashlib.sha256(img.tobytes()).hexdigest()[:16] for img in images_u8.contiguous().numpy()])


def load_checkpoint(path):
    """A checkpoint's contents, on the CPU (load_state_dict moves them to the networks' device;
    the RNG state must stay a CPU tensor). weights_only: a checkpoint from anyone can be opened
    without running its code."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise LabkitError(f"{path}: no checkpoint (train first, or check the run folder)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for foreign, truncated or unsafe files
        raise LabkitError(f"{path}: not a loadable labkit checkpoint ({str(e).splitlines()[0]})") from None
    if not isinstance(state, dict) or state.get("labkit") != 1:
        raise LabkitError(f"{path}: not a labkit checkpoint")
    state["options"] = json.loads(state["options"])
    return state


def load_weights(nets, weights, source):
    try:
        nets.load_state_dict(weights)
    except RuntimeError as e:
        first = [line.strip() for line in str(e).splitlines()[1:2]]
        raise LabkitError(f"{source}: weights do not fit a {nets.model} of this size "
                          f"(check --model/--latent/--width): {' '.join(first)}") from None


def averaged_weights(ema):
    """The weights an average of a run keeps: those that make images (no discriminator)."""
    return {k: v for k, v in ema.state_dict().items() if k.split(".")[0] in AVERAGED}


def load_nets(run, device="cpu"):
    """A trained run's networks in eval mode, and its options; with the averaged encoder and
    decoder where the run kept an average (option ema)."""
    state = load_checkpoint(run)
    o = state["options"]
    nets = Nets.of(o).to(device)
    load_weights(nets, {**state["nets"], **state.get("ema", {})}, run)
    return nets.eval(), o


def comparison(runs_dir, data, n=16):
    """What every comparison figure shows: each model of the registry trained, the same held-out
    faces, the same noise."""
    runs_dir = Path(runs_dir)
    missing = [m for m in MODELS if not (runs_dir / m / "checkpoint.pt").is_file()]
    if missing:
        raise LabkitError(f"{runs_dir}: no trained run for {', '.join(missing)}: run 02_train.ipynb for each model "
                          "first")
    nets = {m: load_nets(runs_dir / m)[0] for m in MODELS}
    latent = {n.latent for n in nets.values()}
    if len(latent) > 1:
        raise LabkitError(f"{runs_dir}: the runs have different latent sizes ({sorted(latent)}): not one comparison")
    return nets, D.holdout_set(data, n)[0], D.fixed_noise(latent.pop(), n)


def training_table(runs):
    """How each run (title -> run folder) trained, as a markdown table: steps, images, wall time
    and its last logged losses; then the machines they ran on."""
    # pandoc sizes the PDF's columns by these dashes: room for the losses
    lines = ["| model | steps | images seen | minutes | last losses |",
             "|" + "|".join("-" * w for w in (12, 10, 8, 7, 40)) + "|"]
    machines = {}
    for name, path in runs.items():
        run = Run(path)
        o, rows = run.options(), [r for r in run.stats() if "kimg" in r]
        last = rows[-1] if rows else {}
        losses = ", ".join(f"{k[5:]} {v:.3g}" for k, v in last.items() if k.startswith("loss/"))
        lines.append(f"| {name} | {last.get('step', 0):,} of {o['steps']:,} | {last.get('kimg', 0):,.0f}k | "
                     f"{last.get('seconds', 0) / 60:.1f} | {losses} |")
        machine = f"{o['provenance']['device']}, torch {o['provenance']['torch']}" + (", bf16" if o.get("fast") else "")
        machines.setdefault(machine, []).append(name)
    where = "; ".join(f"{', '.join(names)} on {m}" for m, names in machines.items())
    return "\n".join(lines) + f"\n\nTrained {where}.\n"
