"""Training-step throughput: python -m labkit.bench [--sizes handout smoke] [--batches 64 256].

Times whole training steps (batch sampling included) of each model, and a plain baseline in the
same run: the handout's CelebADataset + DataLoader (ToTensor/Normalize, batch 64) feeding fp32
eager steps. Prints one JSON line per case. Not a test: numbers vary with the machine.
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from labkit import data as D
from labkit.device import accelerate, native_bf16
from labkit.models import MODELS, Nets
from labkit.options import PROFILES, options
from labkit.runs import Run, provenance
from labkit.train import make_optimizers, train_step

SIZES = {"handout": dict(width=1.0, latent=2048),
         **{p: {k: PROFILES[p][k] for k in ("width", "latent")} for p in ("cpu", "smoke")}}
PROFILE_OF = {"handout": "full", "cpu": "cpu", "smoke": "smoke"}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def setup(model, size, batch, device, fast):
    o = options(model=model, batch=batch, **SIZES[size])
    torch.manual_seed(0)
    nets = accelerate(Nets.of(o).to(device), device, fast)
    return nets, make_optimizers(nets, o, device), o, torch.Generator(device).manual_seed(0)


def flops_per_image(model, size, device):
    """Forward + backward FLOPs of one step, counted from the layers' shapes by torch."""
    from torch.utils.flop_counter import FlopCounterMode
    nets, opts, o, g = setup(model, size, 8, device, fast=False)
    with FlopCounterMode(display=False) as counter:
        train_step(nets, opts, torch.zeros(8, 3, 64, 64, device=device), g, o)
    return counter.get_total_flops() / 8


def images_per_second(step, batch, device, steps, warmup):
    for _ in range(warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return batch * steps / (time.perf_counter() - t0)


def snapshot_seconds(model, size, device, folder):
    """Time to write one checkpoint (weights and optimizer state, fsync'd), as training does."""
    nets, opts, o, g = setup(model, size, 8, device, fast=False)
    train_step(nets, opts, torch.zeros(8, 3, 64, 64, device=device), g, o)  # optimizer state exists
    run = Run(folder)
    t0 = time.perf_counter()
    run.save(nets, opts, 1, g, o)
    seconds = time.perf_counter() - t0
    run.checkpoint.unlink()
    return seconds


def matmul_tflops(device):
    """The device's dense rate for reference: bf16 8192^3 on a GPU, fp32 2048^3 on a CPU."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (2048, torch.float32)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    reps = 20 if device.type == "cuda" else 3
    rate = images_per_second(lambda: a @ b, 1, device, reps, 2)  # "images" = matmuls here
    return 2 * n ** 3 * rate / 1e12


def bench(model, size, batch, device, fast, images, h5, steps, warmup):
    # Compiled graphs of this case alone: after another batch size torch.compile would recompile
    # for dynamic shapes, slower kernels than the static ones a training run at this batch gets.
    torch._dynamo.reset()
    nets, opts, o, g = setup(model, size, batch, device, fast)
    if fast is None:  # the plain baseline: the handout's DataLoader, fp32 eager
        import torchvision.transforms as T
        ds = D.CelebADataset(str(h5), transform=T.Compose([T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)]))
        loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=1, drop_last=True)
        it = iter(loader)

        def step():
            nonlocal it
            try:
                x, _ = next(it)
            except StopIteration:
                it = iter(loader)
                x, _ = next(it)
            train_step(nets, opts, x.to(device, non_blocking=True), g, o)
    else:
        def step():
            idx = torch.randint(len(images), (batch,), device=device)
            train_step(nets, opts, D.to_float(images[idx]), g, o, autocast=fast)
    t0 = time.perf_counter()
    step()  # on the fast path on a GPU, torch.compile's: what a run pays once per model
    sync(device)
    return images_per_second(step, batch, device, steps, warmup), time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--sizes", nargs="+", default=["handout", "smoke"], choices=list(SIZES))
    p.add_argument("--batches", nargs="+", type=int, default=[64])
    p.add_argument("--steps", type=int, default=None, help="timed steps (default: 30 on cuda, 5 on cpu)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--out", help="also append the JSON lines to this file")
    a = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if a.threads:
        torch.set_num_threads(a.threads)
    steps = a.steps or (30 if device.type == "cuda" else 5)
    warmup = 10 if device.type == "cuda" else 2
    peak = matmul_tflops(device)
    images = torch.from_numpy(D.synthetic_images(2048)).to(device)
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        h5 = Path(tmp) / "bench.h5"
        D.write_images_h5(h5, images.cpu().numpy())
        for size in a.sizes:
            for model in a.models:
                flops = flops_per_image(model, size, device)
                save_s, every = snapshot_seconds(model, size, device, tmp), PROFILES[PROFILE_OF[size]]["ckpt_every"]
                base, _ = bench(model, size, 64, device, None, images, h5, steps, warmup)
                for batch in a.batches:
                    for fast in ([False, True] if native_bf16(device) else [False]):
                        if device.type == "cuda":
                            torch.cuda.reset_peak_memory_stats()
                        ips, first_s = bench(model, size, batch, device, fast, images, h5, steps, warmup)
                        line = dict(model=model, size=size, batch=batch, path="fast" if fast else "resident-fp32",
                                    images_per_s=round(ips, 1), baseline_images_per_s=round(base, 1),
                                    speedup_vs_baseline=round(ips / base, 2), gflop_per_image=round(flops / 1e9, 3),
                                    achieved_tflops=round(ips * flops / 1e12, 3), matmul_tflops=round(peak, 2),
                                    fraction_of_matmul=round(ips * flops / 1e12 / peak, 4),
                                    # the share of wall time snapshots take at the profile's ckpt_every
                                    snapshot_s=round(save_s, 3), ckpt_every=every,
                                    snapshot_share=round(save_s / (save_s + every * batch / ips), 4),
                                    first_step_s=round(first_s, 2),
                                    **provenance(device))
                        if device.type == "cuda":
                            line["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
                        print(json.dumps(line), flush=True)
                        lines.append(line)
    if a.out:
        with open(a.out, "a") as f:
            f.writelines(json.dumps(line) + "\n" for line in lines)


if __name__ == "__main__":
    main()
