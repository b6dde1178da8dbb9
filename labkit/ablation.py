"""The VAE-GAN ablation: the handout's settings, each change alone, and the combination kept.

    python -m labkit ablation --profile cpu --out runs/ablation     (hours on a 2-core CPU)

Every row trains a VAE-GAN at the profile's size (width, latent, epochs, data) from the
handout's settings plus the row's change, then all rows are evaluated with one protocol. Rows
already trained are resumed or reused, so an interrupted ablation continues where it stopped.
"""
import json
from pathlib import Path

from labkit import LabkitError
from labkit.metrics import evaluate
from labkit.models import MODELS
from labkit.options import OPTIONS, evaluation, profile_settings
from labkit.runs import Run
from labkit.train import training_loop

# The settings a row may change: the VAE-GAN's own (its registry entry's) and the optimizer's; the
# handout's value of each is the table's default.
VAEGAN_SETTINGS = (*MODELS["vaegan"].settings, "optimizer", "lr_decay", "weight_decay", "init")
HANDOUT = {k: OPTIONS[k].default for k in VAEGAN_SETTINGS}

# Why each row is here, and what it measured: docs/cpu-profile.md#the-ablation.
ROWS = {
    "handout": {},
    "saturating": dict(g_loss="saturating"),
    "d_weights=half": dict(d_weights="half"),
    "recon_fake=false": dict(recon_fake=False),
    "feature_norm": dict(feature_norm=True),
    "dec_batch=joint": dict(dec_batch="joint"),
    "margin=0.35": dict(margin=0.35),
    "margin=0.35 + recon_fake=false": dict(margin=0.35, recon_fake=False),
    "margin=0.35 + gamma=25": dict(margin=0.35, gamma=25.0),
    "margin=0.35 + gamma=100": dict(margin=0.35, gamma=100.0),
    "margin=0.35 + feature_norm": dict(margin=0.35, feature_norm=True),
    "margin=0.35 + feature_layer=3": dict(margin=0.35, feature_layer=3),
    "margin=0.35 + feature_layer=3 + feature_norm": dict(margin=0.35, feature_layer=3, feature_norm=True),
    "margin=0.35 + feature_layer=2 + feature_norm": dict(margin=0.35, feature_layer=2, feature_norm=True),
    "margin=0.35 + feature_layer=2 + feature_norm + gamma=10": dict(margin=0.35, feature_layer=2, feature_norm=True,
                                                                   gamma=10.0),
    "margin=0.35 + feature_layer=2 + feature_norm + gamma=10 + beta=8": dict(margin=0.35, feature_layer=2,
                                                                            feature_norm=True, gamma=10.0, beta=8.0),
    "margin=0.35 + feature_layer=1 + feature_norm": dict(margin=0.35, feature_layer=1, feature_norm=True),
    "lr_decay=0.1": dict(lr_decay=0.1),
    "authors' init+decay": dict(init="glorot", weight_decay=1e-5),
    "optimizer=adam": dict(optimizer="adam"),
}


def kept(profile):
    """The VAE-GAN settings a profile uses where they are not the handout's."""
    return {k: v for k, v in profile_settings(profile, "vaegan").items() if k in HANDOUT and v != HANDOUT[k]}


def rows(profile):
    """ROWS, and the profile's combination as "kept" unless it is one of them already."""
    combination = kept(profile)
    return dict(ROWS, kept=combination) if combination and combination not in ROWS.values() else dict(ROWS)


def ablation(out, profile="cpu", names=None, data=None, eval_n=None, n_ref=None, weights=None, extractor=None,
             progress=True, **shrink):
    """Train (or resume) the rows `names` (default: all) into out/<name>, evaluate those not yet
    evaluated at their current step, and write out/ablation.json and out/ablation.md: these rows
    and the ones evaluated before under the same protocol. Returns the markdown table. shrink
    (epochs, limit, ...) sizes every row alike, for short probes."""
    out = Path(out)
    table = rows(profile)
    names = names or list(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise LabkitError(f"unknown ablation row {', '.join(unknown)}; choose from {', '.join(table)}")
    for name in names:
        settings = dict(HANDOUT, **table[name])
        training_loop(out / name, resume=True, model="vaegan", profile=profile, data=data, progress=progress,
                      **settings, **shrink)
    # The table grows row by row: rows evaluated before under the same protocol, at the step
    # their run is at now, are kept without evaluating them again.
    path = out / "ablation.json"
    before = json.loads(path.read_text()) if path.is_file() else {"runs": {}}
    stats = {n: Run(out / n).stats() for n in table if n in names or n in before["runs"]}
    steps = {n: max((r.get("step", 0) for r in lines), default=0) for n, lines in stats.items()}
    todo = [n for n in names if before["runs"].get(n, {}).get("steps") != steps[n]]
    sizes = evaluation(profile, eval_n=eval_n, n_ref=n_ref)

    def measure(which):  # with no run, still the protocol: the real sets' features come from the cache
        return evaluate([out / n for n in which], data=data, n=sizes["eval_n"], n_ref=sizes["n_ref"], weights=weights,
                        sets=("prior", "recon"), extractor=extractor, cache_dir=out / "cache")

    metrics = measure(todo)
    if not same_protocol(before.get("protocol", {}), metrics["protocol"]):  # the earlier rows measured otherwise
        rest = [n for n in names if n not in todo]
        if rest:
            metrics["runs"].update(measure(rest)["runs"])
        before, todo = {"runs": {}}, names
    for name in todo:
        run = metrics["runs"][name]
        run["change"], run["steps"] = table[name], steps[name]
        # The last stats line may be an epoch's summary, without the cumulative wall time.
        run["train_seconds"] = max(r.get("seconds", 0) for r in stats[name])
    shown = {n: r for n, r in before["runs"].items() if n in steps and r.get("steps") == steps[n]}
    shown.update(metrics["runs"])
    metrics["runs"] = {n: shown[n] for n in table if n in shown}
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    text = markdown(metrics)
    (out / "ablation.md").write_text(text)
    return text


def same_protocol(a, b):
    """Whether two evaluations measured alike: the same real sets, counts, features and noise."""
    keys = ("reference", "reference_count", "generated_count", "floor_count", "weights", "seed", "sets")
    return all(a.get(k) == b.get(k) for k in keys)


def markdown(metrics):
    """One row per setting, named for its change from the handout (and marked where the profile
    keeps it): FIDs beside the floor, fidelity, sharpness, collapse, time."""
    p = metrics["protocol"]
    lines = ["| change from the handout | FID prior | FID recon | pixel MSE | sharpness samples | "
             "diversity | shared pattern | training minutes |",
             # pandoc sizes the PDF's columns by these dashes: room for the rows' names
             "|" + "|".join("-" * w for w in (22, 5, 5, 6, 6, 6, 6, 6)) + "|"]
    for name, r in metrics["runs"].items():
        name += " (kept)" if r["change"] and r["change"] == kept(r["options"]["profile"]) else ""
        lines.append(f"| {name} | {r['fid_prior']:.1f} | {r['fid_recon']:.1f} | {r['mse']:.4f} | "
                     f"{r['sharpness_prior']:.0f} | {r['diversity_prior']:.2f} | {r['shared_pattern_prior']:.2f} | "
                     f"{r['train_seconds'] / 60:.1f} |")
    # A row's length is the profile's unless a probe shrank it (--epochs): the table says which.
    lengths = sorted({(r["steps"], r["options"]["batch"]) for r in metrics["runs"].values()})
    lines.append("\nTrained " + " or ".join(f"{steps:,} steps of batch {batch}" for steps, batch in lengths) + "; "
                 f"FID floor (real training faces vs held-out faces): {p['floor_fid']:.1f}; "
                 f"{p['generated_count']} generated vs {p['reference_count']} held-out images; real faces: sharpness "
                 f"{p['sharpness_real']:.0f}, diversity 1, shared pattern 1.")
    return "\n".join(lines) + "\n"
