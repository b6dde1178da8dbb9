"""The whole reproduction on a machine lent for minutes: one command, run as often as it takes.

    python -m labkit reproduce --out DIR --data img_align_celeba.zip [--profile full] [--time-limit 540]

Each call continues where the last stopped (the work folder keeps data, checkpoints and
evaluation caches): it builds the HDF5 files from the zip, trains vae, gan and vaegan until the
time limit (each stop leaves a checkpoint), and once all three are trained executes the
notebooks (figures, evaluation) and packs into DIR only what must come back: the executed
notebooks, figures, metrics, each run's options, stats, log, a few grids and the held-out
reconstructions its evaluation scored (for `identity` at home), in at most MAX_PARTS files of
under PART_MIB. Checkpoints stay in the work folder. A call that stops sooner packs the runs'
progress (options, stats, log, grids): a machine lent for minutes sends back what it measured
even when the reproduction does not fit in them.
Back home, `python -m labkit report --from DIR` builds the report from them.
"""
import io
import os
import shutil
import tarfile
import time
from pathlib import Path

from labkit import LabkitError, data as D
from labkit.models import MODELS
from labkit.report import execute, export
from labkit.runs import Run
from labkit.train import training_loop

MAX_PARTS, PART_MIB = 8, 15
GRID_EPOCHS = (1, 2, 5, 10, 20, 50)  # and the last: how a run developed, without all 100 grids


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


def reproduce(out, data=None, work="reproduce", profile="full", time_limit=540, settings=None):
    """One call's share of the reproduction; True once DIR holds the results, else DIR holds the
    progress so far."""
    deadline = time.time() + time_limit
    work = Path(work).resolve()
    build = work / "build"
    data = prepared_data(data, work)
    for model in MODELS:
        run = build / "runs" / model
        left = deadline - time.time()
        if left <= 0:
            break
        if not finished(run):  # a finished run's checkpoint (~1 GB at full size) is not loaded again
            training_loop(run, resume=True, model=model, profile=profile, data=data, time_limit=left,
                          **(settings or {}))
    unfinished = [m for m in MODELS if not finished(build / "runs" / m)]
    weights = os.environ.get("LABKIT_INCEPTION")
    done = (build / "report.json").is_file()
    if unfinished:
        print(f"[labkit] time limit: {', '.join(unfinished)} not trained yet; run the same command again to continue")
    elif weights and not Path(weights).is_file() and not done:
        # Checked before the notebooks, not by the evaluation halfway through them.
        print(f"[labkit] trained; the evaluation needs the FID Inception weights at {weights}: "
              "bring them there and run the same command again")
    elif not done:
        pack(build, Path(out))  # the progress comes back even if the call is cut during the notebooks
        execute(profile, build, data, settings)
        done = True
    parts = pack(build, Path(out))
    if done:
        print(f"[labkit] results in {len(parts)} file(s) under {out}; at home: python -m labkit report --from {out}")
    else:
        print(f"[labkit] the runs' progress (options, stats, log, grids) in {len(parts)} file(s) under {out}")
    return done


def _members(build):
    """The files that come back, relative to `build`."""
    yield from build.glob("*.ipynb")
    yield from build.glob("report.json")
    yield from (p for p in (build / "figures").rglob("*") if p.is_file() and "cache" not in p.parts)
    for model in MODELS:
        run = build / "runs" / model
        yield from (run / name for name in ("options.json", "stats.jsonl", "log.txt", "reconstructions.npz")
                    if (run / name).is_file())
        grids = sorted(run.glob("grids/epoch-*.png"))
        keep = {f"epoch-{e:04d}.png" for e in GRID_EPOCHS} | ({grids[-1].name} if grids else set())
        yield from (g for g in grids if g.name in keep)


def pack(build, out):
    """A tar.gz of the results, split into parts of under PART_MIB (the limits of what a lent
    machine sends back); returns the part paths."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in _members(build):
            tar.add(path, arcname=str(path.relative_to(build)))
    data, size = buf.getvalue(), PART_MIB * 2**20
    chunks = [data[i:i + size] for i in range(0, len(data), size)]
    if len(chunks) > MAX_PARTS:
        raise LabkitError(f"the results take {len(data) / 2**20:.0f} MiB, more than {MAX_PARTS} parts of "
                          f"{PART_MIB} MiB")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("results.tar.gz.part*"):
        old.unlink()
    parts = [out / f"results.tar.gz.part{i}" for i in range(len(chunks))]
    for path, chunk in zip(parts, chunks):
        path.write_bytes(chunk)
    return parts


def report_from(results, build="build/from"):
    """Unpack what a reproduction sent back into `build` and build the report there (publish it
    with `python -m labkit publish --build BUILD`). Returns the paths written."""
    parts = sorted(Path(results).glob("results.tar.gz.part*"), key=lambda p: int(p.name.rsplit("part", 1)[1]))
    if not parts:
        raise LabkitError(f"{results}: no results.tar.gz.part* files (the output of python -m labkit reproduce)")
    build = Path(build).resolve()
    shutil.rmtree(build, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(b"".join(p.read_bytes() for p in parts)), mode="r:gz") as tar:
        tar.extractall(build, filter="data")
    if not (build / "report.json").is_file():
        raise LabkitError(f"{results}: the progress of a reproduction, not its results (no report.json): "
                          "run reproduce again until it says it is done")
    return export(build)
