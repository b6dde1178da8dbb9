"""Crashes, torn files, divergence and untrusted checkpoints never cost more than the steps
since the last checkpoint."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from labkit import LabkitError, data as D, train as T
from labkit.metrics import diversity
from labkit.runs import Run, load_checkpoint, load_nets

from conftest import TINY, loss_rows as losses

SETTINGS = dict(model="vaegan", profile="smoke", epochs=3, batch=16, limit=128, log_every=1, ckpt_every=5, **TINY)
CLI = ["--model", "vaegan", "--profile", "smoke", "--epochs", "3", "--batch", "16", "--limit", "128",
       "--log-every", "1", "--ckpt-every", "5", "--width", "0.0625", "--latent", "16"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    run = tmp_path_factory.mktemp("straight")
    T.training_loop(run, progress=False, **SETTINGS)
    return losses(run)


def start(run, env=None):
    return subprocess.Popen([sys.executable, "-m", "labkit", "train", "--run-dir", str(run), *CLI, "--resume"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def kill_after(proc, run, lines, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(Run(run).stats()) >= lines:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return
        if proc.poll() is not None:
            pytest.fail(f"training ended before it could be killed: {proc.stderr.read().decode()[-500:]}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail("training did not progress")


@pytest.mark.slow
def test_kill_9_twice_then_resume_gives_the_uninterrupted_losses(tmp_path, straight):
    run = tmp_path / "run"
    kill_after(start(run), run, 7)
    kill_after(start(run), run, 17)
    with open(run / "stats.jsonl", "a") as f:
        f.write('{"step": 21, "epo')  # a line torn by the kill
    T.training_loop(run, resume=True, progress=False, **SETTINGS)
    assert losses(run) == straight


KILL_IN_SAVE = """
import os, signal, sys, torch
from labkit.train import training_loop
real_save, calls = torch.save, [0]
def save(obj, f):
    calls[0] += 1
    if calls[0] == 3:  # the third checkpoint (step 15): half written, then the process dies
        f.write(b"PK half a checkpoint"); f.flush(); os.kill(os.getpid(), signal.SIGKILL)
    real_save(obj, f)
torch.save = save
training_loop(sys.argv[1], progress=False, **{settings})
"""


@pytest.mark.slow
def test_kill_during_a_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, straight):
    run = tmp_path / "run"
    code = KILL_IN_SAVE.replace("{settings}", repr(SETTINGS))
    proc = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert (run / "checkpoint.pt.tmp").read_bytes().startswith(b"PK half")
    assert load_checkpoint(run)["step"] == 10  # the second checkpoint, intact
    T.training_loop(run, resume=True, progress=False, **SETTINGS)
    assert losses(run) == straight


@pytest.mark.slow
def test_two_processes_cannot_train_into_one_run_folder(tmp_path):
    proc = start(tmp_path)
    try:
        while not Run(tmp_path).stats():
            assert proc.poll() is None, proc.stderr.read().decode()[-500:]
            time.sleep(0.01)
        with pytest.raises(LabkitError, match="another process is training into this run folder"):
            T.training_loop(tmp_path, resume=True, progress=False, **SETTINGS)
    finally:
        proc.kill()
        proc.wait()
    T.training_loop(tmp_path, resume=True, progress=False, **SETTINGS)  # the lock died with its process


def nan_at(monkeypatch, steps):
    """Make compute_losses return a NaN llike at the given (1-based) calls."""
    real, calls = T.compute_losses, [0]

    def poisoned(*args, **kwargs):
        calls[0] += 1
        losses, objectives = real(*args, **kwargs)
        if calls[0] in steps:
            losses["llike"] = losses["llike"] * float("nan")
        return losses, objectives
    monkeypatch.setattr(T, "compute_losses", poisoned)


def test_nan_stops_naming_step_and_loss_and_keeps_a_resumable_checkpoint(tmp_path, monkeypatch, straight):
    nan_at(monkeypatch, {13})
    with pytest.raises(T.Diverged, match="diverged at step 13: loss llike is nan"):
        T.training_loop(tmp_path, progress=False, **SETTINGS)
    assert load_checkpoint(tmp_path)["step"] == 10
    assert all(torch.isfinite(v).all() for v in load_checkpoint(tmp_path)["nets"].values())
    monkeypatch.undo()
    T.training_loop(tmp_path, resume=True, progress=False, **SETTINGS)
    assert losses(tmp_path) == straight


def test_non_finite_weights_are_never_checkpointed(tmp_path, monkeypatch):
    real_step, calls = T.train_step, [0]

    def blows_up_at_step_10(nets, *args, **kwargs):
        out = real_step(nets, *args, **kwargs)  # this step's losses were finite...
        calls[0] += 1
        if calls[0] == 10:  # ...but its update left an infinite weight, just before a checkpoint
            next(nets.dec.parameters()).data.fill_(float("inf"))
        return out
    monkeypatch.setattr(T, "train_step", blows_up_at_step_10)
    with pytest.raises(T.Diverged, match="step 10: the weights became non-finite"):
        T.training_loop(tmp_path, progress=False, **SETTINGS)
    state = load_checkpoint(tmp_path)
    assert state["step"] == 5 and all(torch.isfinite(v).all() for v in state["nets"].values())


def test_rollback_reloads_the_checkpoint_and_halves_the_lr(tmp_path, monkeypatch, capsys):
    nan_at(monkeypatch, {13})
    T.training_loop(tmp_path, progress=False, on_nan="rollback", **SETTINGS)
    assert "rolling back to the last checkpoint with lr 0.00015" in capsys.readouterr().err
    assert json.loads((tmp_path / "options.json").read_text())["lr"] == 1.5e-4
    assert [r["step"] for r in Run(tmp_path).stats() if "kimg" in r][-1] == 24


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"labkit": 1, "nets": Evil()}, tmp_path / "checkpoint.pt")
    with pytest.raises(LabkitError, match="not a loadable labkit checkpoint"):
        load_nets(tmp_path)
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(LabkitError, match="not a loadable labkit checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_weights_of_another_size_give_a_clear_error(tmp_path):
    T.training_loop(tmp_path, progress=False, **dict(SETTINGS, epochs=1))
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    state["options"] = json.dumps(dict(json.loads(state["options"]), latent=32))
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(LabkitError, match="weights do not fit a vaegan of this size"):
        load_nets(tmp_path)


def test_collapsed_samples_measure_as_collapsed():
    faces = torch.from_numpy(D.synthetic_images(16))
    assert diversity(faces[:1].repeat(16, 1, 1, 1)) == 0
    assert diversity(faces) > 0.1
    assert diversity(faces[:1].repeat(16, 1, 1, 1)) / diversity(faces) < T.COLLAPSE_RATIO


def test_collapse_warning_is_printed_and_logged(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(T, "COLLAPSE_RATIO", 10.0)  # every run looks collapsed against this bar
    T.training_loop(tmp_path, progress=False, **dict(SETTINGS, epochs=1))
    assert "warning: mode collapse?" in capsys.readouterr().err
    assert "sample_diversity" in Run(tmp_path).stats()[-1]


@pytest.mark.parametrize("spreads, warned", [((0.9, 0.8, 0.85), False), ((0.9, 0.95, 0.5), True)])
def test_samples_breaking_down_late_are_warned_of(tmp_path, monkeypatch, capsys, spreads, warned):
    # A spread far above the collapse bar that halves from one epoch to the next (a GAN that
    # broke in its last epoch) is a warning too; ordinary ups and downs are not.
    spread = iter(spreads)
    monkeypatch.setattr(T, "write_grid", lambda *args: next(spread))
    T.training_loop(tmp_path, progress=False, **dict(SETTINGS, epochs=3))
    err = capsys.readouterr().err
    assert ("warning: samples broke down?" in err) == warned
    if warned:
        assert "from 95% at epoch 2 (epoch 3)" in err and "epoch-0002.png" in err


def test_dataset_larger_than_free_memory_is_refused(tmp_path, monkeypatch):
    from conftest import write_h5
    path = write_h5(tmp_path / "x.h5", D.synthetic_images(8))
    monkeypatch.setattr(D, "available_memory", lambda: 40_000)
    with pytest.raises(LabkitError, match="more than this machine has free"):
        D.load_images(path)


def test_free_memory_counts_the_page_cache():
    meminfo = dict(line.split(":") for line in open("/proc/meminfo").read().splitlines())
    available = int(meminfo["MemAvailable"].split()[0]) * 1024
    assert abs(D.available_memory() - available) < 2**28  # MemAvailable, moments apart
    assert D.available_memory() >= int(meminfo["MemFree"].split()[0]) * 1024 - 2**28
