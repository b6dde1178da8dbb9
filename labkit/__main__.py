"""python -m labkit {train,sample,prepare,evaluate,identity,judge,conditional,ablation,report,publish,bundle,
                   reproduce} ...

Each command has --help.
"""
import argparse
import json
import sys
from pathlib import Path

from labkit import LabkitError
from labkit.options import OPTIONS, PROFILES, add_arguments

INCEPTION_HELP = "local FID Inception weights (default: $LABKIT_INCEPTION, else download)"


def positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def cmd_train(a):
    from labkit.train import training_loop
    run = training_loop(a.run_dir, resume=a.resume, **{k: getattr(a, k) for k in OPTIONS})
    print(f"[labkit] done: {run}")


def cmd_sample(a):
    import torch

    from labkit import plots
    if (a.run is None) == (a.pretrained is None):
        raise LabkitError("give a run folder or --pretrained MODEL (one of them)")
    if a.pretrained:
        from labkit.pretrained import load
        nets, info = load(a.pretrained)
        model, latent = info["settings"]["model"], info["settings"]["latent"]
        out = a.out or Path(f"samples-{a.pretrained}-seed{a.seed}.png")
    else:
        from labkit.runs import load_nets
        nets, o = load_nets(a.run, "cpu")
        model, latent = o["model"], o["latent"]
        out = a.out or Path(a.run) / f"samples-seed{a.seed}.png"
    z = torch.randn(a.n, latent, generator=torch.Generator().manual_seed(a.seed))
    y = None
    if nets.attributes:  # a conditional run: faces for the held-out faces' attribute vectors, in turn
        from labkit.train import conditioning
        held = conditioning(o["data"])[2]
        y = held[torch.arange(a.n) % len(held)]
    plots.save_png(plots.grid(nets.decode(z, y), nrow=a.nrow), out)
    print(f"[labkit] {a.n} samples of {model} -> {out}" + (" (for the held-out faces' attributes)" if y is not None
                                                            else ""))


def cmd_prepare(a):
    from labkit.data import prepare
    n_train, n_hold = prepare(a.src, a.out, holdout=a.holdout, partition=a.partition, limit=a.limit)
    print(f"[labkit] {a.out}: {n_train} training and {n_hold} held-out images")


def cmd_evaluate(a):
    from labkit.metrics import evaluate, table
    out = a.out or Path(a.runs[0]).parent / "metrics.json"
    results = evaluate(a.runs, data=a.data, n=a.n, weights=a.inception_weights, seed=a.seed, out=out, n_ref=a.n_ref)
    print(table(results))
    print(f"[labkit] {out} ({results['protocol']['seconds']} s)")


def cmd_identity(a):
    from labkit.identity import identity, table
    out = a.out or (Path(a.runs[0]).parent / "identity.json" if a.runs else None)
    results = identity(a.runs, data=a.data, n=a.n, blurs=a.blur, out=out)
    print(table(results))
    print(f"[labkit] {out or 'not written (no --out)'} ({results['protocol']['seconds']} s; the detector found "
          f"{results['protocol']['detected']} of {results['protocol']['count']} faces)")


def cmd_judge(a):
    from labkit.judge import cached_judge, table
    _, record = cached_judge(a.data, a.cache, epochs=a.epochs, seed=a.seed)
    print(table(record))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(record, indent=2) + "\n")
        print(f"[labkit] {a.out}")


def cmd_conditional(a):
    from labkit.conditional import conditional
    print(conditional(a.runs, a.figures, a.data, a.profile, a.cache, epochs=a.epochs, limit=a.limit, seed=a.seed))
    print(f"[labkit] {Path(a.figures) / 'conditional.json'}, {Path(a.figures) / 'conditional.png'}")


def cmd_ablation(a):
    from labkit.ablation import ablation
    print(ablation(a.out, a.profile, a.rows, a.data, eval_n=a.eval_n, n_ref=a.n_ref, weights=a.inception_weights,
                   epochs=a.epochs, limit=a.limit))


def cmd_report(a):
    if a.from_dir:
        from labkit.reproduce import report_from
        paths = report_from(a.from_dir, Path(a.build) / "from")
    else:
        from labkit.report import build_report
        paths = build_report(a.profile, a.build, a.data, epochs=a.epochs, limit=a.limit, eval_n=a.eval_n, n_ref=a.n_ref)
    for kind, path in paths.items():
        print(f"[labkit] report ({kind}): {path}")


def cmd_publish(a):
    from labkit.publish import publish
    dest, removed = publish(a.build)
    print(f"[labkit] published {a.build} into {dest}" + (f"; removed {', '.join(removed)}" if removed else ""))


def cmd_bundle(a):
    from labkit.bundle import bundle
    names, mib, line = bundle(a.dir, a.python, a.zip, a.have)
    print(f"[labkit] {a.dir}: {len(names)} wheels for Python {a.python}{' and ' + Path(a.zip).name if a.zip else ''}, "
          f"{mib:.1f} MiB. Install there, offline:\n{line}")


def cmd_reproduce(a):
    from labkit.reproduce import reproduce
    settings = {k: v for k, v in dict(epochs=a.epochs, fast=a.fast, compile=a.compile).items() if v is not None}
    done = reproduce(a.out, a.data, a.work, a.profile, a.time_limit, settings, a.job_seconds, a.return_files,
                     a.return_mib)
    return 0 if done else 3


def add_training_commands(sub):
    t = sub.add_parser("train", help="train vae (hw2), gan (hw3) or vaegan into a run folder")
    t.add_argument("--run-dir", required=True, help="folder for options, stats, grids, checkpoint")
    t.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    add_arguments(t)
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="a grid of prior samples from a trained run or the published weights")
    s.add_argument("run", nargs="?", help="run folder (or its checkpoint.pt)")
    s.add_argument("--pretrained", metavar="MODEL", help="the published weights of MODEL (figures/cpu/weights), or a "
                   ".safetensors file, instead of a run")
    s.add_argument("--n", type=positive_int, default=64)
    s.add_argument("--nrow", type=positive_int, default=8)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", help="PNG path (default: RUN/samples-seedS.png; with --pretrained samples-MODEL-seedS.png)")
    s.set_defaults(func=cmd_sample)

    r = sub.add_parser("prepare", help="build celeba64.h5 / celeba64_holdout.h5 from img_align_celeba")
    r.add_argument("src", help="img_align_celeba folder or zip")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--holdout", type=int, default=2000, help="hold out the last N ids (default 2000)")
    r.add_argument("--partition", help="list_eval_partition.txt: train+val for training, test held out")
    r.add_argument("--limit", type=positive_int, help="only the first N images")
    r.set_defaults(func=cmd_prepare)


def add_evaluation_commands(sub):
    e = sub.add_parser("evaluate", help="FID/KID, MSE/SSIM and sharpness of trained runs on held-out faces")
    e.add_argument("runs", nargs="+", help="run folders")
    e.add_argument("--data", help="celeba64.h5 or its folder; the held-out file beside it is the reference")
    e.add_argument("--n", type=positive_int, default=10_000, help="generated images per set (default 10000)")
    e.add_argument("--n-ref", type=positive_int, help="held-out reference images (default: all)")
    e.add_argument("--inception-weights", help=INCEPTION_HELP)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", help="JSON path (default: metrics.json beside the first run)")
    e.set_defaults(func=cmd_evaluate)

    i = sub.add_parser("identity", help="do reconstructions show the same person? dlib's face descriptor (needs dlib)")
    i.add_argument("runs", nargs="*", help="vae or vaegan run folders")
    i.add_argument("--data", help="celeba64.h5 or its folder; the held-out file beside it holds the faces")
    i.add_argument("--n", type=positive_int, default=1000,
                   help="held-out faces (default 1000); as many as the evaluation reconstructed to judge what it "
                   "scored")
    i.add_argument("--blur", type=positive_float, nargs="*", default=[],
                   help="also these Gaussian blurs of the faces (sigma in px), to calibrate the scale")
    i.add_argument("--out", help="JSON path (default: identity.json beside the first run)")
    i.set_defaults(func=cmd_identity)

    j = sub.add_parser("judge", help="the attribute judge: a CNN reading CelebA's 40 attributes, trained once on "
                       "the training faces, its accuracy per attribute on the held-out ones")
    j.add_argument("--data", help="celeba64.h5 or its folder, with list_attr_celeba*.txt beside it")
    j.add_argument("--cache", default="build/cache", help="where the trained judge is kept (default build/cache)")
    j.add_argument("--epochs", type=positive_int, default=8, help="training epochs (default 8)")
    j.add_argument("--seed", type=int, default=0)
    j.add_argument("--out", help="also write the per-attribute accuracy as JSON here")
    j.set_defaults(func=cmd_judge)

    c = sub.add_parser("conditional", help="the paper's table: conditional VAE, GAN and VAE-GAN trained on CelebA's "
                       "attributes, scored by the attribute judge")
    c.add_argument("--data", help="celeba64.h5 or its folder, with list_attr_celeba*.txt beside it")
    c.add_argument("--profile", choices=list(PROFILES), default="cpu", help="the size of every run (default cpu)")
    c.add_argument("--runs", default="build/conditional", help="one run folder per model (default build/conditional)")
    c.add_argument("--figures", default="build/figures",
                   help="where conditional.json and conditional.png go (default build/figures, where the report reads "
                   "them)")
    c.add_argument("--cache", default="build/cache", help="where the trained judge is kept (default build/cache)")
    c.add_argument("--epochs", type=positive_int, help="override the profile's epochs (short probes)")
    c.add_argument("--limit", type=positive_int, help="override the profile's training-set size (short probes)")
    c.add_argument("--seed", type=int, help="the runs' seed (default 0): another one trains another set of runs")
    c.set_defaults(func=cmd_conditional)

    ab = sub.add_parser("ablation", help="train the VAE-GAN with each setting change, evaluate, tabulate")
    ab.add_argument("--out", required=True, help="folder for one run per row, ablation.json and ablation.md")
    ab.add_argument("--profile", choices=list(PROFILES), default="cpu", help="the size of every row's run")
    ab.add_argument("--rows", nargs="+", help="only these rows (default: all; see labkit/ablation.py)")
    ab.add_argument("--data", help="celeba64.h5 or its folder (default: $LABKIT_DATA)")
    ab.add_argument("--epochs", type=positive_int, help="override the profile's epochs (short probes)")
    ab.add_argument("--limit", type=positive_int, help="override the profile's training-set size (short probes)")
    ab.add_argument("--eval-n", type=positive_int, help="generated images per FID set (default: the profile's)")
    ab.add_argument("--n-ref", type=positive_int, help="held-out reference images (default: the profile's)")
    ab.add_argument("--inception-weights", help=INCEPTION_HELP)
    ab.set_defaults(func=cmd_ablation)

    rp = sub.add_parser("report", help="run the notebooks with papermill and export the report (PDF, HTML)")
    rp.add_argument("--profile", choices=["auto", *PROFILES], default="auto",
                    help="auto: full with a GPU and CelebA, cpu with CelebA only, else smoke")
    rp.add_argument("--build", default="build", help="folder for executed notebooks, runs and the report")
    rp.add_argument("--data", help="celeba64.h5 or its folder (default: $LABKIT_DATA, else synthetic faces)")
    rp.add_argument("--epochs", type=positive_int, help="override the profile's epochs")
    rp.add_argument("--limit", type=positive_int, help="override the profile's training-set size")
    rp.add_argument("--eval-n", type=positive_int, help="generated images per FID set")
    rp.add_argument("--n-ref", type=positive_int, help="held-out reference images for FID")
    rp.add_argument("--from", dest="from_dir", help="build the report from the files `reproduce` sent back")
    rp.set_defaults(func=cmd_report)

    pb = sub.add_parser("publish", help="copy a cpu or full report's figures, metrics and PDF into figures/<profile>/")
    pb.add_argument("--build", default="build", help="the report's build folder (report --from: build/from)")
    pb.set_defaults(func=cmd_publish)


def add_offline_gpu_commands(sub):
    b = sub.add_parser("bundle", help="wheels (and the CelebA zip) for an offline GPU machine, and the install line")
    b.add_argument("dir", help="output folder")
    b.add_argument("--python", default="3.12", help="the GPU machine's Python version (default 3.12)")
    b.add_argument("--zip", help="img_align_celeba zip to put beside the wheels")
    b.add_argument("--have", help="pip freeze of the GPU machine: packages to leave out (default: torch & co)")
    b.set_defaults(func=cmd_bundle)

    rr = sub.add_parser("reproduce", help="on a GPU machine: data, training, evaluation, notebooks; call again to "
                        "continue")
    rr.add_argument("--out", required=True, help="folder for what must come back (a few files)")
    rr.add_argument("--data", help="img_align_celeba zip, a folder of its JPEGs, or a folder holding celeba64.h5")
    rr.add_argument("--work", default="reproduce", help="folder for data, checkpoints, caches (stays there)")
    rr.add_argument("--profile", choices=list(PROFILES), default="full")
    rr.add_argument("--time-limit", type=float, default=540, help="seconds this call may take (default 540)")
    rr.add_argument("--job-seconds", type=positive_float, help="seconds the job's calls may take together: the first "
                    "call measures the step rates and fixes the epochs and the evaluation's size to fit")
    rr.add_argument("--return-files", type=positive_int, default=8, help="files the job may send back (default 8)")
    rr.add_argument("--return-mib", type=positive_float, default=60, help="MiB the job may send back (default 60)")
    rr.add_argument("--epochs", type=positive_int, help="override the profile's epochs (without --job-seconds; give "
                    "the same in every call)")
    rr.add_argument("--fast", action=argparse.BooleanOptionalAction, help=OPTIONS["fast"].help)
    rr.add_argument("--compile", action=argparse.BooleanOptionalAction, help=OPTIONS["compile"].help)
    rr.set_defaults(func=cmd_reproduce)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m labkit", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for add in (add_training_commands, add_evaluation_commands, add_offline_gpu_commands):
        add(sub)
    a = p.parse_args(argv)
    try:
        return a.func(a) or 0
    except LabkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: the last checkpoint is kept; continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
