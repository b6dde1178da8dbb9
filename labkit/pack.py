"""What an offline job sends back, within its return limits: parts that stand alone, and a manifest.

A job's return is limited in files and in bytes. `pack` puts a build folder's results into at most
`files` tar.gz parts and `mib` MiB in all, counting what else the job leaves in the folder, most
important first:

    1. the record: report.json, metrics and other JSON, each run's options, stats and log
    2. the figures
    3. the executed notebooks the report is assembled from
    4. a few grids of each run (how it developed)
    5. the reconstructions each evaluation scored (for `identity` at home), cut to the first
       held-out faces that fit

Each part is a tar.gz of its own, so a part that does not arrive takes only its own files with it;
manifest.json says what each part holds, what was cut or left out, and why. `unpack` reads them back.
"""
import io
import json
import tarfile
from pathlib import Path

import numpy as np

from labkit import LabkitError

PART = "results-{}.tar.gz"
MANIFEST = "manifest.json"
GRID_EPOCHS = (1, 2, 5, 10, 20, 50)  # and the last: how a run developed, without all 100 grids
TIERS = ("record", "figures", "notebooks", "grids", "reconstructions")
MANIFEST_BYTES = 64 * 1024  # kept free for the manifest itself
MIN_FACES = 100  # fewer reconstructions than this are not worth sending


def tiers(build):
    """{tier: [paths relative to build]} of what could come back (the workbook's training
    notebooks do not: the report is assembled without them)."""
    build = Path(build)
    runs = sorted(p for p in (build / "runs").glob("*") if p.is_dir())
    found = {t: [] for t in TIERS}
    found["record"] = [*build.glob("report.json"), *(build / "figures").glob("*.json"),
                       *(run / n for run in runs for n in ("options.json", "stats.jsonl", "log.txt")
                         if (run / n).is_file())]
    found["figures"] = sorted((build / "figures").glob("*.png"))
    found["notebooks"] = sorted(p for p in build.glob("*.ipynb") if not p.name.startswith(("02_train", "report")))
    for run in runs:
        grids = sorted(run.glob("grids/epoch-*.png"))
        keep = {f"epoch-{e:04d}.png" for e in GRID_EPOCHS} | ({grids[-1].name} if grids else set())
        found["grids"] += [g for g in grids if g.name in keep]
        if (run / "reconstructions.npz").is_file():
            found["reconstructions"].append(run / "reconstructions.npz")
    return {t: [p.relative_to(build) for p in paths] for t, paths in found.items()}


def _tar(build, files, replaced=None):
    """A tar.gz in memory of these files (relative to build); `replaced` maps a file to the bytes
    that stand for it (a cut reconstructions.npz)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for rel in files:
            data = (replaced or {}).get(rel)
            if data is None:
                tar.add(Path(build) / rel, arcname=str(rel))
            else:
                info = tarfile.TarInfo(str(rel))
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _cut(path, keep):
    """A reconstructions.npz holding only its first `keep` faces, as bytes."""
    with np.load(path) as kept:
        images, digests = kept["images"][:keep], kept["digests"][:keep]
    buf = io.BytesIO()
    np.savez_compressed(buf, images=images, digests=digests)
    return buf.getvalue()


def pack(build, out, files=8, mib=60):
    """Write build's results into out as parts within the limits (see the module's doc); returns
    the manifest. Earlier parts in out are replaced; other files there count against the limits."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob(PART.format("*")), out / MANIFEST]:
        old.unlink(missing_ok=True)
    others = [p for p in out.iterdir() if p.is_file()]
    room_files = files - len(others) - 1
    room = mib * 2**20 - sum(p.stat().st_size for p in others) - MANIFEST_BYTES
    if room_files < 1 or room < 0:
        raise LabkitError(f"{out}: its other files leave no room within {files} files and {mib} MiB for the results")
    manifest = {"limits": {"files": files, "mib": mib}, "parts": {}, "cut": {}, "left_out": {}}
    groups = tiers(build)
    # A part per tier, and one per run's reconstructions; with fewer files the reconstructions share
    # one part, then the least important parts merge.
    units = [(t, groups[t]) for t in TIERS[:-1] if groups[t]]
    units += [("reconstructions", [rel]) for rel in groups["reconstructions"]]
    while len(units) > room_files:
        recon = [u for u in units if u[0] == "reconstructions"]
        if len(recon) > 1:
            shared = ("reconstructions", [rel for _, members in recon for rel in members])
            units = [u for u in units if u[0] != "reconstructions"] + [shared]
        else:
            (t1, f1), (t2, f2) = units[-2], units[-1]
            units[-2:] = [(f"{t1}+{t2}", f1 + f2)]
    blobs = {}
    for i, (tier, members) in enumerate(units):  # most important first, while they fit
        if "reconstructions" in tier:
            continue
        blob = _tar(build, members)
        if len(blob) <= room:
            blobs[i], room = blob, room - len(blob)
        else:
            _leave_out(manifest, members, f"no room: the {tier} part takes {len(blob) / 2**20:.1f} MiB, "
                                          f"{room / 2**20:.1f} MiB were left")
    blobs.update(_fit_reconstructions(build, units, room, manifest))
    for i, blob in sorted(blobs.items()):
        name = PART.format(i)
        (out / name).write_bytes(blob)
        manifest["parts"][name] = {"tier": units[i][0], "files": [str(r) for r in units[i][1]],
                                   "mib": round(len(blob) / 2**20, 2)}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _leave_out(manifest, members, why):
    manifest["left_out"].update({str(rel): why for rel in members})


def _fit_reconstructions(build, units, room, manifest):
    """{unit index: tar.gz} of the units that hold reconstructions, each run's cut to the same first
    faces, as many as fit `room` together (all of them when they do)."""
    todo = {i: members for i, (tier, members) in enumerate(units) if "reconstructions" in tier}
    npzs = [rel for members in todo.values() for rel in members if rel.name == "reconstructions.npz"]
    if not npzs:
        return {}
    with np.load(Path(build) / npzs[0]) as first:
        total = keep = len(first["digests"])
    while keep == total or keep >= MIN_FACES:  # all of them, else as many of the first as fit
        replaced = {rel: _cut(Path(build) / rel, keep) for rel in npzs} if keep < total else {}
        blobs = {i: _tar(build, members, replaced) for i, members in todo.items()}
        if sum(len(b) for b in blobs.values()) <= room:
            if keep < total:
                manifest["cut"].update({str(rel): f"the first {keep} of {total} held-out faces (identity --n {keep})"
                                        for rel in npzs})
            return blobs
        keep = keep * 3 // 4
    for members in todo.values():
        _leave_out(manifest, members, f"no room for even {MIN_FACES} reconstructions a run")
    return {}


def unpack(results, build):
    """Extract every part found in `results` into `build`; returns the files the manifest lists in
    parts that are not there (results packed before manifests: every part is taken as one tar)."""
    results, build = Path(results), Path(build)
    parts = sorted(results.glob(PART.format("*")))
    if not parts:
        raise LabkitError(f"{results}: no {PART.format('*')} files (the output of python -m labkit reproduce)")
    for part in parts:
        with tarfile.open(part, mode="r:gz") as tar:
            tar.extractall(build, filter="data")
    manifest = results / MANIFEST
    if not manifest.is_file():
        return []
    listed = json.loads(manifest.read_text())["parts"]
    return [f for name, part in listed.items() if not (results / name).is_file() for f in part["files"]]
