"""Where a run computes and how fast: the device, and the fast path (bf16, channels-last, compile)."""
import contextlib
from pathlib import Path

import torch

from labkit import LabkitError

CPUINFO = Path("/proc/cpuinfo")  # where Linux lists the CPU's instruction sets


def resolve_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LabkitError(f"device {name} asked for, but torch sees no CUDA GPU")
    return torch.device(name)


def native_bf16(device):
    """Whether the fast path pays on this device: on a GPU, and on a CPU with bf16 instructions
    (AVX512-BF16 or AMX: 1.9-2.2x per step on a 2-core EPYC); elsewhere bf16 is emulated, slower."""
    if device.type == "cuda":
        return True
    try:
        flags = CPUINFO.read_text().split()
    except OSError:  # not Linux
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def accelerate(nets, device, fast, compile=None):
    """The fast path's networks (autocast is train_step's): channels-last weights, since bf16
    convolutions run fastest on NHWC tensors, and compiled (default: on a GPU; on a CPU compiling
    gains ~5% for a minute of compile time). In place: state_dict keys stay the plain modules'.
    compile=False keeps bf16 and channels-last where a torch cannot compile the networks."""
    if fast:
        nets.to(memory_format=torch.channels_last)
        if device.type == "cuda" if compile is None else compile:
            compile_networks(nets)
    return nets


def compile_networks(nets):
    """torch.compile each network in place. Each network's gradient comes from a backward pass of
    its own over the one graph of the step (backward_routed and the diagnostics retain it), which
    a compiled backward that donates its saved buffers to save memory refuses (torch >= 2.6)."""
    if hasattr(torch._functorch.config, "donated_buffer"):
        torch._functorch.config.donated_buffer = False
    for module in nets.children():
        module.compile()
    return nets


def eager():
    """Compiled networks run uncompiled inside: drawn in eval mode, without grad and at other
    batch sizes, a figure would compile graphs of its own (3 of a VAE-GAN's 7; 10 s of a 38-s
    compiled smoke run on the CPU), GPU time an offline job would spend on a picture an epoch.
    (torch.compiler.set_stance came with torch 2.6.)"""
    stance = getattr(torch.compiler, "set_stance", None)
    return stance("force_eager") if stance else contextlib.nullcontext()
