"""Publishing a report's results into the repository: figures/<profile>/, an explicit step.

    python -m labkit publish [--build build]

`make report` writes only into its build folder, so that a user's report (other runs: another
CPU trains other runs from the same seeds) never rewrites the committed results. `publish`
copies a finished cpu or full report there: its figures, metrics.json, report.pdf, report.json
(what it was run with), the results other commands made into its figures folder (MADE_APART), and,
where the runs' checkpoints are at hand, their weights (labkit.pretrained) with a model card. Figures
the new report no longer draws are removed, and an identity.json that judged other runs than
the new metrics.json is removed too (python -m labkit identity measures it again).
"""
import json
import shutil
from pathlib import Path

from labkit import LabkitError, pretrained
from labkit.identity import unjudged

ROOT = Path(__file__).resolve().parents[1]
# Results the report shows but other commands make (python -m labkit ablation, identity, conditional):
# copied when the build has them, the published ones kept when it has not.
MADE_APART = ("ablation.json", "identity.json", "conditional.json", "conditional.png")


def publish(build="build", root=ROOT):
    """Copy build's results into root/figures/<profile>/; returns the folder and what it removed."""
    build = Path(build)
    record_file, figures = build / "report.json", build / "figures"
    if not record_file.is_file() or not (figures / "metrics.json").is_file():
        raise LabkitError(f"{build}: no finished report with metrics (run make report, or report --from, first)")
    profile = json.loads(record_file.read_text())["facts"]["profile"]
    if profile == "smoke":
        raise LabkitError(f"{build}: a smoke check, not results: nothing to publish")
    if not (build / "report.pdf").is_file():
        raise LabkitError(f"{build}: no report.pdf (the PDF needs xelatex and pandoc): publish the report with its PDF")
    dest = Path(root) / "figures" / profile
    dest.mkdir(parents=True, exist_ok=True)
    drawn = {p.name for p in figures.glob("*.png")}
    removed = [p.name for p in dest.glob("*.png") if p.name not in drawn and p.name not in MADE_APART]
    for name in removed:
        (dest / name).unlink()
    apart = [figures / n for n in MADE_APART if n.endswith(".json") and (figures / n).is_file()]
    for path in [*figures.glob("*.png"), figures / "metrics.json", *apart, build / "report.pdf", record_file]:
        shutil.copy2(path, dest / path.name)
    removed += publish_weights(build, dest, json.loads(record_file.read_text())["facts"])
    identity = dest / "identity.json"
    metrics = json.loads((dest / "metrics.json").read_text())
    if identity.is_file() and unjudged(json.loads(identity.read_text()), metrics):
        identity.unlink()
        removed.append(identity.name)
    return dest, removed


def publish_weights(build, dest, facts):
    """Each trained run's published file into dest/weights/, with the model card; returns the names
    of weights it replaced that no run made this time. Results without checkpoints (a GPU job's,
    whose checkpoints stayed there) publish none and keep what is there."""
    runs = sorted(p.parent for p in (build / "runs").glob("*/checkpoint.pt"))
    if not runs:
        return []
    folder = dest / "weights"
    folder.mkdir(exist_ok=True)
    data = facts["data"] if Path(str(facts["data"])).exists() else None
    made = [pretrained.export(run, folder / f"{run.name}.safetensors", data).name for run in runs]
    removed = [p.name for p in folder.glob("*.safetensors") if p.name not in made]
    for name in removed:
        (folder / name).unlink()
    metrics = json.loads((dest / "metrics.json").read_text())
    (folder / "README.md").write_text(pretrained.model_card(folder, metrics, facts))
    return [f"weights/{name}" for name in removed]


def results_file(name, figures, profile, root=ROOT):
    """A results file the report shows but does not make (MADE_APART): the build's
    figures folder's, else the published one of its profile, else the build's path to write it to."""
    for folder in (Path(figures), Path(root) / "figures" / profile):
        if (folder / name).is_file():
            return folder / name
    return Path(figures) / name
