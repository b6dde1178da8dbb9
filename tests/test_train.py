import json

import pytest
import torch
from torch._dynamo.utils import counters

from labkit import LabkitError, data as D, device as device_policy, train as T
from labkit.device import accelerate, compile_networks, native_bf16
from labkit.models import MODELS, Nets, compute_losses
from labkit.options import options
from labkit.runs import Run, load_checkpoint, load_nets
from labkit.train import make_optimizers, train_step, training_loop, update_ema

from conftest import TINY, loss_rows

RUN = dict(profile="smoke", epochs=2, batch=16, limit=64, log_every=2, ckpt_every=3, progress=False, **TINY)


def overfit(model, steps, freeze=(), **kw):
    """Train on one fixed batch; return pixel MSE of its reconstructions before and after."""
    o = options(**{**dict(model=model, profile="smoke", optimizer="adam", lr=2e-3, **TINY), **kw})
    torch.manual_seed(0)
    nets = Nets(model, o["latent"], o["width"])
    opts = {k: v for k, v in make_optimizers(nets, o, torch.device("cpu")).items() if k not in freeze}
    x = D.to_float(torch.from_numpy(D.synthetic_images(16, seed=5)))
    g = torch.Generator().manual_seed(0)

    def error():
        nets.eval()
        e = (nets.reconstruct(x) - x).square().mean().item()
        nets.train()
        return e

    before = error()
    history = [train_step(nets, opts, x, g, o) for _ in range(steps)]
    return before, error(), history


def test_tiny_vae_overfits_one_batch():
    before, after, history = overfit("vae", 150)
    assert after < 0.45 * before
    assert history[-1]["rec"] < 0.4 * history[0]["rec"]


def test_tiny_vaegan_reconstruction_path_overfits_one_batch():
    # With D held fixed, Dis_l is a fixed feature space, and the VAE-GAN's reconstruction
    # error is the feature-wise L_llike (pixels are not its objective): it must fall steeply.
    _, _, history = overfit("vaegan", 150, freeze=("dis",))
    assert history[-1]["llike"] < 0.3 * history[0]["llike"]


def test_tiny_vaegan_discriminator_learns_and_nothing_diverges():
    # On one batch D wins (it can memorise 16 images); its loss must fall from 3 ln 2.
    _, _, history = overfit("vaegan", 100, lr=1e-3)
    assert history[-1]["d"] < 0.25 * history[0]["d"]
    assert all(torch.isfinite(v) for h in history for v in h.values())


def test_same_seed_same_losses(tmp_path):
    training_loop(tmp_path / "a", model="vaegan", **RUN)
    training_loop(tmp_path / "b", model="vaegan", **RUN)
    a = loss_rows(tmp_path / "a")
    assert a == loss_rows(tmp_path / "b") and len(a) >= 4
    training_loop(tmp_path / "c", model="vaegan", **dict(RUN, seed=1))
    assert loss_rows(tmp_path / "c") != a


def test_run_folder_contents(tmp_path):
    training_loop(tmp_path, model="vae", **RUN)
    o = json.loads((tmp_path / "options.json").read_text())
    assert o["model"] == "vae" and o["g_loss"] == "nonsaturating" and o["gamma"] == 5.0 and o["steps"] == 8
    assert "synthetic" in o["data_used"]
    assert sorted(p.name for p in (tmp_path / "grids").iterdir()) == ["epoch-0001.png", "epoch-0002.png"]
    assert Run(tmp_path).stats()[-1]["step"] == 8


def test_checkpoint_round_trip_gives_identical_samples(tmp_path):
    training_loop(tmp_path, model="gan", **RUN)
    nets, o = load_nets(tmp_path)
    again, _ = load_nets(tmp_path / "checkpoint.pt")
    z = torch.randn(8, o["latent"])
    torch.testing.assert_close(nets.sample(z), again.sample(z), rtol=0, atol=0)
    # weights_only: the file holds tensors and plain values only.
    torch.load(tmp_path / "checkpoint.pt", weights_only=True)


@pytest.mark.parametrize("model", list(MODELS))
def test_resume_continues_the_same_loss_curve(tmp_path, model):
    training_loop(tmp_path / "straight", model=model, **dict(RUN, epochs=3))
    training_loop(tmp_path / "resumed", model=model, **dict(RUN, epochs=1))
    training_loop(tmp_path / "resumed", model=model, resume=True, **dict(RUN, epochs=3))
    assert loss_rows(tmp_path / "resumed") == loss_rows(tmp_path / "straight")


def test_the_average_moves_by_its_half_life_and_only_where_images_are_made():
    live, ema = Nets("vaegan", **TINY), Nets("vaegan", **TINY)
    for net, value in ((live, 1.0), (ema, 0.0)):
        for p in net.parameters():
            p.data.fill_(value)
    live.dec.deconvs[0][1].running_mean.fill_(3.0)
    # 500 images per step, half-life 1 kimg, past the ramp-up: each step keeps 2^-0.5 of the average.
    update_ema(ema, live, 1000, dict(batch=500, ema=1.0))
    for name, value in (("enc", 1 - 0.5 ** 0.5), ("dec", 1 - 0.5 ** 0.5), ("dis", 0.0)):
        for p in getattr(ema, name).parameters():
            torch.testing.assert_close(p, torch.full_like(p, value))
    assert (ema.dec.deconvs[0][1].running_mean == 3.0).all()  # BatchNorm statistics are copied
    # In the ramp-up (10 kimg seen, 5%: half-life 0.5 kimg) the same step keeps 2^-1.
    update_ema(ema, live, 20, dict(batch=500, ema=1.0))
    torch.testing.assert_close(next(ema.dec.parameters()), torch.full_like(next(ema.dec.parameters()), 1 - 0.5 ** 1.5))


@pytest.mark.parametrize("model", ["gan", "vaegan"])
def test_a_run_with_an_average_is_evaluated_with_it_and_resumes_it_exactly(tmp_path, model):
    training_loop(tmp_path / "straight", model=model, ema=0.05, **dict(RUN, epochs=3))
    training_loop(tmp_path / "resumed", model=model, ema=0.05, **dict(RUN, epochs=1))
    training_loop(tmp_path / "resumed", model=model, ema=0.05, resume=True, **dict(RUN, epochs=3))
    state = load_checkpoint(tmp_path / "straight")
    averaged, _ = load_nets(tmp_path / "straight")
    for k, v in averaged.state_dict().items():
        kept = state["ema"] if k.split(".")[0] in ("enc", "dec") else state["nets"]
        torch.testing.assert_close(v, kept[k], rtol=0, atol=0)
    assert set(state["ema"]) == {k for k in state["nets"] if not k.startswith("dis.")}
    assert not torch.equal(state["ema"]["dec.fc.0.weight"], state["nets"]["dec.fc.0.weight"])
    resumed = load_checkpoint(tmp_path / "resumed")["ema"]
    assert all(torch.equal(resumed[k], v) for k, v in state["ema"].items())
    training_loop(tmp_path / "plain", model=model, **RUN)
    assert "ema" not in load_checkpoint(tmp_path / "plain")


def test_an_augmented_run_resumes_exactly_and_trains_on_other_images(tmp_path):
    training_loop(tmp_path / "straight", model="vaegan", augment=True, **dict(RUN, epochs=3))
    training_loop(tmp_path / "resumed", model="vaegan", augment=True, **dict(RUN, epochs=1))
    training_loop(tmp_path / "resumed", model="vaegan", augment=True, resume=True, **dict(RUN, epochs=3))
    training_loop(tmp_path / "plain", model="vaegan", **dict(RUN, epochs=3))
    assert loss_rows(tmp_path / "resumed") == loss_rows(tmp_path / "straight") != loss_rows(tmp_path / "plain")


def test_a_time_limit_stops_with_a_checkpoint_and_resume_finishes_the_same_run(tmp_path):
    training_loop(tmp_path / "straight", model="vaegan", **RUN)
    training_loop(tmp_path / "cut", model="vaegan", time_limit=0, **RUN)  # stops at the first logged step
    assert [r["step"] for r in Run(tmp_path / "cut").stats()] == [2] and load_nets(tmp_path / "cut")
    training_loop(tmp_path / "cut", model="vaegan", resume=True, **RUN)
    assert loss_rows(tmp_path / "cut") == loss_rows(tmp_path / "straight")


def test_resuming_a_finished_run_leaves_its_folder_as_it_was(tmp_path, monkeypatch):
    training_loop(tmp_path / "run", model="vae", **RUN)
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    monkeypatch.setattr(T, "provenance", lambda device=None: {"commit": "later"})  # resumed at other code
    training_loop(tmp_path / "run", model="vae", resume=True, **RUN)
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()} == before


def test_resume_refuses_a_different_model_size(tmp_path):
    training_loop(tmp_path, model="vae", **RUN)
    with pytest.raises(LabkitError, match="latent=16 .now 32."):
        training_loop(tmp_path, model="vae", resume=True, **dict(RUN, latent=32))
    with pytest.raises(LabkitError, match="already holds a run"):
        training_loop(tmp_path, model="vae", **RUN)


@pytest.mark.parametrize("bad, message", [
    (dict(model="dcgan"), "unknown model 'dcgan'"),
    (dict(profile="huge"), "unknown profile 'huge'"),
    (dict(epochs=0), "epochs must be a positive integer"),
    (dict(batch=-4), "batch must be a positive integer"),
    (dict(lr=0.0), r"lr must be in \(0, 1\]"),
    (dict(lr=float("nan")), r"lr must be in"),
    (dict(gamma=-5), r"gamma must be in"),
    (dict(beta=0), r"beta must be in"),
    (dict(width=0), r"width must be in"),
    (dict(g_loss="hinge"), "unknown generator loss 'hinge'"),
    (dict(device="tpu"), "device must be auto, cpu or cuda"),
])
def test_bad_settings_fail_before_any_work(tmp_path, bad, message):
    with pytest.raises(LabkitError, match=message):
        training_loop(tmp_path / "run", **{**RUN, **bad})
    assert not (tmp_path / "run").exists()


def test_batch_larger_than_data_is_a_clear_error(tmp_path):
    with pytest.raises(LabkitError, match="batch 128 is larger than the training set"):
        training_loop(tmp_path, model="vae", **dict(RUN, batch=128))


def test_checkpoints_load_on_the_cpu_so_the_rng_state_restores_on_any_device(tmp_path, monkeypatch):
    # The CUDA bug: torch.load(map_location=device) put the RNG state on the GPU, and
    # Generator.set_state takes only a CPU byte tensor. The meta device shows it without a GPU.
    training_loop(tmp_path, model="vae", **RUN)
    real_load, seen = torch.load, {}
    with pytest.raises((TypeError, RuntimeError, NotImplementedError)):
        on_meta = real_load(tmp_path / "checkpoint.pt", map_location="meta", weights_only=True)
        torch.Generator().set_state(on_meta["rng"])
    monkeypatch.setattr(torch, "load", lambda *a, **k: seen.update(k) or real_load(*a, **k))
    state = load_checkpoint(tmp_path)
    assert seen["map_location"] == "cpu" and state["rng"].device.type == "cpu"
    torch.Generator().set_state(state["rng"])


@pytest.mark.parametrize("flags, native", [("fpu sse avx2", False), ("fpu avx512f avx512_bf16", True),
                                           ("fpu amx_bf16 amx_tile", True)])
def test_the_fast_path_is_on_by_default_only_where_bf16_is_native(tmp_path, monkeypatch, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor : 0\nflags : {flags}\n")
    monkeypatch.setattr(device_policy, "CPUINFO", cpuinfo)
    assert native_bf16(torch.device("cpu")) is native
    monkeypatch.setattr(device_policy, "CPUINFO", tmp_path / "absent")
    assert native_bf16(torch.device("cpu")) is False and native_bf16(torch.device("cuda")) is True


def test_fast_path_losses_match_fp32_and_its_weights_load_as_plain_ones(tmp_path):
    # bf16 autocast on channels-last weights computes the same losses as fp32 up to bf16's
    # precision, and a fast run's checkpoint rebuilds the plain (contiguous, fp32) networks.
    o = options(model="vaegan", profile="smoke", **TINY)
    torch.manual_seed(0)
    plain = Nets.of(o)
    fast = accelerate(Nets.of(o), torch.device("cpu"), True)
    fast.load_state_dict(plain.state_dict())
    assert fast.dis.layer_l.weight.is_contiguous(memory_format=torch.channels_last)
    x = D.to_float(torch.from_numpy(D.synthetic_images(16, seed=5)))
    exact, _ = compute_losses(plain, x, torch.Generator().manual_seed(0), o)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        approx, _ = compute_losses(fast, x, torch.Generator().manual_seed(0), o)
    for k in ("kl", "llike", "d", "g"):
        torch.testing.assert_close(approx[k], exact[k], rtol=0.05, atol=1e-3)
    training_loop(tmp_path, model="vaegan", **dict(RUN, fast=True))
    assert json.loads((tmp_path / "options.json").read_text())["fast"] is True
    nets, _ = load_nets(tmp_path)
    assert all(p.is_contiguous() for p in nets.parameters())


CUDA = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("device", [pytest.param("cpu", marks=pytest.mark.slow), pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("model", ["gan", "vaegan"])  # their networks take turns at backward over one graph
def test_compiled_networks_train_as_the_eager_ones(model, device, tmp_path):
    # What the fast path compiles on a GPU (here on the CPU too, about 10 s a model), in the
    # order training runs it: plain steps, then a logged one whose diagnostics take backward
    # passes of their own through networks compiled without them. The first step gives the eager
    # one's losses (later ones drift apart at bf16's precision, as any two GAN runs do); the
    # epoch's grid compiles nothing. On-disk compile caches off: a cached backward hid the failure
    # this guards against. scripts/gpu_job.sh trains without the fast path if this fails on CUDA.
    o, dev = options(model=model, profile="smoke", batch=16, **TINY), torch.device(device)
    torch.manual_seed(0)
    eager = Nets.of(o).to(dev, memory_format=torch.channels_last)
    compiled = Nets.of(o).to(dev, memory_format=torch.channels_last)
    compiled.load_state_dict(eager.state_dict())
    compile_networks(compiled)
    x = D.to_float(torch.from_numpy(D.synthetic_images(16, seed=5)).to(dev))
    steps = {}
    with torch._inductor.config.patch(fx_graph_cache=False), torch._functorch.config.patch(enable_autograd_cache=False):
        for name, nets in (("eager", eager), ("compiled", compiled)):
            opts = make_optimizers(nets, o, dev)
            steps[name] = [train_step(nets, opts, x, torch.Generator(dev).manual_seed(i), o, autocast=True,
                                      diagnose=i > 0) for i in range(3)]
        graphs = dict(counters["stats"])
        faces = torch.from_numpy(D.synthetic_images(8, seed=6)).to(dev)
        T.write_grid(compiled, faces, torch.randn(16, o["latent"], device=dev), tmp_path / "grid.png")
        assert dict(counters["stats"]) == graphs
    torch._dynamo.reset()
    (first, *_), (first_compiled, *later) = steps["eager"], steps["compiled"]
    for k in first:
        torch.testing.assert_close(first_compiled[k], first[k], rtol=0.05, atol=1e-3, msg=k)
    assert all("diag/dec_grad_g" in row and all(v.isfinite() for v in row.values()) for row in later)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("augment", [False, True])  # the jitter draws from the run's CUDA generator
def test_resume_on_cuda_continues_the_same_loss_curve(tmp_path, augment):
    cuda = dict(RUN, device="cuda", fast=False, augment=augment)
    training_loop(tmp_path / "straight", model="vaegan", **dict(cuda, epochs=3))
    training_loop(tmp_path / "resumed", model="vaegan", **dict(cuda, epochs=1))
    training_loop(tmp_path / "resumed", model="vaegan", resume=True, **dict(cuda, epochs=3))
    a, b = loss_rows(tmp_path / "straight"), loss_rows(tmp_path / "resumed")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for x, y in zip(a, b):  # cuDNN may pick other kernels after a restart: equal to float noise
        assert all(abs(x[k] - y[k]) <= 1e-3 * max(1, abs(x[k])) for k in x if k.startswith("loss/")), (x, y)


def test_compiling_is_its_own_choice_beside_bf16():
    # Where a torch cannot compile the networks, --no-compile keeps the rest of the fast path.
    kept = accelerate(Nets("gan", **TINY), torch.device("cpu"), fast=True, compile=False)
    assert kept.dis.layer_l.weight.is_contiguous(memory_format=torch.channels_last)
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in kept.children())
    compiled = accelerate(Nets("gan", **TINY), torch.device("cpu"), fast=True, compile=True)
    assert all(getattr(m, "_compiled_call_impl", None) is not None for m in compiled.children())
    assert options(profile="smoke", compile=False)["compile"] is False
