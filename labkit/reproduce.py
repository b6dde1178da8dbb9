"""The whole reproduction as an offline GPU job: one command, the same in every call.

    python -m labkit reproduce --out DIR --data img_align_celeba.zip --job-seconds 780 --time-limit 540

Each call continues where the last stopped (the work folder keeps data, checkpoints, evaluation
caches and the plan): it builds the HDF5 files from the zip, trains every model of the registry
until the call's time limit, and once all are trained runs the notebooks (figures, evaluation).
Whatever stops it (the time limit, a divergence, an error) it packs what it has into DIR within
the job's return limits (labkit.pack): the results, or the runs' progress so far.

With --job-seconds (the job's seconds, all calls together) the first call plans: every model trains
for a first stretch, their measured step rates fix the epochs so that the training, the
evaluation and the notebooks fit the job's time, and plan.json keeps those numbers for every later
call; the report says what was run and why. A model starts only with START_SECONDS left.
Back home, `python -m labkit report --from DIR` builds the report from what came back.
"""
import json
import math
import os
import shutil
import time
from pathlib import Path

from labkit import LabkitError, data as D
from labkit.models import MODELS
from labkit.options import evaluation, options
from labkit.pack import pack, unpack
from labkit.report import execute, export
from labkit.runs import Run
from labkit.train import training_loop

START_SECONDS = 90      # a model starts only with this much left: set-up, compilation, a logged step, a checkpoint
END_SECONDS = 30        # kept after training stops: the last logged steps, the checkpoint, the packing
PROBE_SECONDS = 60      # each model's first stretch in a planned job, to measure its step rate
NOTEBOOK_SECONDS = 150  # the notebooks' own time beside the evaluation (kernels, figures, the similarity probe)
EVAL_IMAGES_PER_SECOND = {"cuda": 1500, "cpu": 15}  # Inception's rate, to size the evaluation (docs/offline-gpu.md)
MIN_EVAL_N = 1000


def prepared_data(data, work):
    """A folder holding celeba64.h5 (and the held-out file): `data` itself, or built from a zip
    or a folder of JPEGs into work/data once."""
    path = Path(data) if data else D.resolve_data(None)
    if path is None:
        raise LabkitError("no data: pass --data with img_align_celeba.zip or a folder holding celeba64.h5")
    if (path / D.TRAIN_FILE).is_file() or path.suffix == ".h5":
        return path
    out = work / "data"
    if not (out / D.TRAIN_FILE).is_file():
        D.prepare(path, out)
    return out


def finished(run_dir):
    if not (Path(run_dir) / "options.json").is_file():
        return False
    rows = [r for r in Run(run_dir).stats() if "kimg" in r]
    return bool(rows) and rows[-1]["step"] >= Run(run_dir).options()["steps"]


def step_rate(run_dir):
    """Steps per second of a run after its first logged row (which holds set-up and compilation)."""
    rows = [r for r in Run(run_dir).stats() if "kimg" in r]
    if len(rows) < 2 or rows[-1]["seconds"] <= rows[0]["seconds"]:
        return None
    return (rows[-1]["step"] - rows[0]["step"]) / (rows[-1]["seconds"] - rows[0]["seconds"])


def evaluation_images(n, n_ref, sets):
    """How many images the evaluation passes through Inception: every set of every model, the
    held-out reference and the floor's training faces."""
    per_model = [1 + sum(s in sets for s in ("recon", "expost")) * spec.has_encoder for spec in MODELS.values()]
    return n * sum(per_model) + n_ref + n


def make_plan(build, data, profile, settings, seconds_left, device):
    """The epochs and the evaluation's size that fit what is left of the job's time, from the
    step rates the first stretch of each run measured."""
    o = {m: options(model=m, profile=profile, **settings) for m in MODELS}
    sizes = evaluation(profile)
    held_out = D.validate_h5(D.holdout_path(D.resolve_data(data)))
    n_ref = min(sizes["n_ref"] or held_out, held_out)
    sets = sizes["eval_sets"] or ("prior", "recon", "expost")
    rate = EVAL_IMAGES_PER_SECOND["cuda" if device.startswith("cuda") else "cpu"]
    n = sizes["eval_n"]
    while n > MIN_EVAL_N and evaluation_images(n, n_ref, sets) / rate > 0.15 * seconds_left:
        n = max(MIN_EVAL_N, n // 2)
    eval_seconds = evaluation_images(n, n_ref, sets) / rate
    rates, done, per_epoch = {}, {}, {}
    for m in MODELS:
        run = build / "runs" / m
        rates[m], done[m] = step_rate(run), max((r["step"] for r in Run(run).stats() if "kimg" in r), default=0)
        per_epoch[m] = Run(run).options()["steps"] // o[m]["epochs"]
    train_seconds = seconds_left - eval_seconds - NOTEBOOK_SECONDS - START_SECONDS
    # sum over models of (epochs * steps per epoch - steps done) / rate <= train_seconds
    epochs = (train_seconds + sum(done[m] / rates[m] for m in MODELS)) / sum(per_epoch[m] / rates[m] for m in MODELS)
    epochs = max(1, min(o["vaegan"]["epochs"], math.floor(epochs)))
    return {"epochs": epochs, "eval_n": n, "seconds_left_when_planned": round(seconds_left),
            "notebook_seconds": round(eval_seconds + NOTEBOOK_SECONDS),
            "steps_per_second": {m: round(r, 2) for m, r in rates.items()},
            "why": f"{epochs} epochs and {n:,} images per evaluation set fit the {seconds_left / 60:.0f} minutes left "
                   f"of the job's time at the measured rates (the profile's: {o['vaegan']['epochs']} and "
                   f"{sizes['eval_n']:,})"}


def reproduce(out, data=None, work="reproduce", profile="full", time_limit=540, settings=None, job_seconds=None,
              return_files=8, return_mib=60):
    """One call's share of the reproduction; True once DIR holds the results, else DIR holds the
    progress so far. Every call packs, whatever stopped it."""
    start = time.time()
    deadline = start + time_limit
    work = Path(work).resolve()
    build = work / "build"
    settings = dict(settings or {})
    settings.setdefault("on_nan", "rollback")  # a divergence rolls back and goes on: the minutes are paid
    done = False
    try:
        done = _call(work, build, prepared_data(data, work), profile, settings, deadline, start, job_seconds)
    finally:
        manifest = pack(build, Path(out), return_files, return_mib)
        what = "results" if done else "the runs' progress"
        print(f"[labkit] {what} in {len(manifest['parts'])} part(s) under {out}"
              + (f"; left out: {', '.join(manifest['left_out'])}" if manifest["left_out"] else "")
              + (f"; at home: python -m labkit report --from {out}" if done else ""), flush=True)
    return done


def _call(work, build, data, profile, settings, deadline, start, job_seconds):
    plan_file, spent_file = work / "plan.json", work / "spent.json"
    spent = json.loads(spent_file.read_text())["seconds"] if spent_file.is_file() else 0.0
    plan = json.loads(plan_file.read_text()) if plan_file.is_file() else None

    def left_in_job():
        return job_seconds - spent - (time.time() - start) if job_seconds else math.inf

    def train(model, limit):
        training_loop(build / "runs" / model, resume=True, model=model, profile=profile, data=data,
                      time_limit=limit, **dict(settings, **({"epochs": plan["epochs"]} if plan else {})))

    try:
        if job_seconds and plan is None:  # the first stretch of every model, then the plan
            for model in MODELS:
                while step_rate(build / "runs" / model) is None:  # two logged rows give the rate
                    if deadline - time.time() < START_SECONDS + PROBE_SECONDS:
                        break
                    train(model, PROBE_SECONDS)
            if all(step_rate(build / "runs" / m) for m in MODELS):
                device = Run(build / "runs" / next(iter(MODELS))).options()["device"]
                plan = make_plan(build, data, profile, settings, left_in_job(), device)
                plan_file.write_text(json.dumps(plan, indent=2))
                print(f"[labkit] plan: {plan['why']}", flush=True)
        for model in MODELS:
            left = min(deadline, time.time() + left_in_job()) - time.time()
            if finished(build / "runs" / model):  # a finished run's checkpoint (~1 GB at full size) is not loaded
                continue
            if left < START_SECONDS or (job_seconds and plan is None):
                break
            train(model, left - END_SECONDS)
    finally:
        spent_file.write_text(json.dumps({"seconds": spent + time.time() - start}))
    unfinished = [m for m in MODELS if not finished(build / "runs" / m)]
    weights = os.environ.get("LABKIT_INCEPTION")
    if (build / "report.json").is_file():
        return True
    if unfinished:
        print(f"[labkit] time limit: {', '.join(unfinished)} not trained yet; run the same command again to continue")
        return False
    if weights and not Path(weights).is_file():  # checked before the notebooks, not halfway through them
        print(f"[labkit] trained; the evaluation needs the FID Inception weights at {weights}: "
              "bring them there and run the same command again")
        return False
    needed = plan["notebook_seconds"] if plan else NOTEBOOK_SECONDS
    if deadline - time.time() < needed:  # started now, the notebooks would be cut: the next call runs them
        print(f"[labkit] trained; the notebooks need about {needed} s, more than this call has left: "
              "run the same command again")
        return False
    execute(profile, build, data, dict(settings, **({"epochs": plan["epochs"]} if plan else {})),
            eval_n=plan["eval_n"] if plan else None, note=plan["why"] if plan else None)
    return True


def report_from(results, build="build/from"):
    """Unpack what a reproduction sent back into `build` and build the report there (publish it
    with `python -m labkit publish --build BUILD`). Returns the paths written."""
    build = Path(build).resolve()
    shutil.rmtree(build, ignore_errors=True)
    missing = unpack(results, build)
    if missing:
        print(f"[labkit] parts that did not come back held: {', '.join(missing)}", flush=True)
    if not (build / "report.json").is_file():
        raise LabkitError(f"{results}: the progress of a reproduction, not its results (no report.json): "
                          "run reproduce again until it says it is done")
    return export(build)
