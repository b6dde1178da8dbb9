"""The paper's table (its section 4.2): do models conditioned on attributes draw faces that have them?

    python -m labkit conditional --data data/        (about half an hour on a 2-core CPU)

Trains (or resumes) the conditional VAE, GAN and VAE-GAN (labkit.models.CONDITIONAL) at a
profile's size, trains the attribute judge once (labkit.judge), then draws one face for each
held-out face's attribute vector, for each of SEEDS, and scores how the judge's reading of every
face agrees with the vector it was drawn for, over the attributes the judge can read. Two rows
frame the models': the ceiling, the judge on the real held-out faces against their own
attributes; and the floor, the same faces against shuffled attribute vectors, what a generator
that ignores the condition and draws real faces would score.
"""
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from labkit import LabkitError, data as D, judge as J, plots
from labkit.models import CONDITIONAL
from labkit.runs import Run, load_nets
from labkit.train import training_loop

SEEDS = (0, 1)  # the generation noise's seeds (and the floor's shuffles): the table's spread
# The figure's columns: one attribute switched at a time, from a face's vector that has none of them.
SWITCHED = ("Smiling", "Eyeglasses", "Male", "Blond_Hair", "Young")
CEILING, FLOOR = "real faces (ceiling)", "shuffled attributes (floor)"


def scores(probs, conditions, judged):
    """How the judge's reading of faces (its probabilities, N x attributes) agrees with the +-1
    vectors they were drawn for, over the `judged` attributes (a boolean mask): the cosine
    similarity of the reading (2p - 1, in [-1, 1]) and the vector, face by face, and the mean
    squared error between them (the paper's two scores), and the share of attributes read as given."""
    read, given = (2 * probs - 1)[:, judged], conditions[:, judged]
    return {"cosine": F.cosine_similarity(read, given, dim=1).mean().item(),
            "mse": (read - given).square().mean().item(),
            "agreement": ((read > 0) == (given > 0)).float().mean().item()}


def followed(probs, conditions, names):
    """Per attribute, how well faces follow it: the mean of the share of faces drawn with it that
    the judge reads with it and the share drawn without it read without (0.5: ignored)."""
    said, given = probs > 0.5, conditions > 0
    hits = (said & given).sum(0) / given.sum(0).clamp(min=1) + (~said & ~given).sum(0) / (~given).sum(0).clamp(min=1)
    return {name: hits[i].item() / 2 for i, name in enumerate(names)}


def summary(runs):
    """Mean and spread (standard deviation over the seeds) of each score of a row's runs."""
    out = {}
    for key in ("cosine", "mse", "agreement"):
        values = torch.tensor([r[key] for r in runs], dtype=torch.float64)
        out[key] = round(values.mean().item(), 4)
        out[f"{key}_sd"] = round(values.std(unbiased=True).item() if len(values) > 1 else 0.0, 4)
    return out


def score_table(generators, read, held_out, conditions, names, judged, seeds=SEEDS):
    """The table's rows: each generator's (title -> draw(conditions, seed) -> uint8 faces), the
    ceiling and the floor. `read` is the judge: uint8 faces -> probabilities."""
    rows = {}
    for title, draw in generators.items():
        runs = []
        for seed in seeds:
            probs = read(draw(conditions, seed))
            runs.append(dict(scores(probs, conditions, judged), followed=followed(probs, conditions, names)))
        rows[title] = dict(summary(runs), followed={n: round(sum(r["followed"][n] for r in runs) / len(runs), 4)
                                                    for n in names})
    real = read(held_out)
    rows[CEILING] = dict(summary([scores(real, conditions, judged)]),
                         followed={n: round(v, 4) for n, v in followed(real, conditions, names).items()})
    shuffled = [conditions[torch.randperm(len(conditions), generator=torch.Generator().manual_seed(s))] for s in seeds]
    rows[FLOOR] = dict(summary([scores(real, y, judged) for y in shuffled]),
                       followed={n: round(sum(followed(real, y, names)[n] for y in shuffled) / len(seeds), 4)
                                 for n in names})
    return rows


def drawer(nets, latent):
    """A trained conditional run as draw(conditions, seed): one face per vector, noise of that seed."""
    def draw(conditions, seed):
        z = torch.randn(len(conditions), latent, generator=torch.Generator().manual_seed(seed))
        return nets.decode(z, conditions)
    return draw


def base_vector(conditions, names, shown):
    """The figure's starting vector: the first held-out face's that has none of `shown` but Young
    (so each column switches one on, and Young's off); the first face's when none has that."""
    index = {n: i for i, n in enumerate(names)}
    wanted = torch.tensor([1.0 if n == "Young" else -1.0 for n in shown])
    match = (conditions[:, [index[n] for n in shown]] == wanted).all(1).nonzero()
    return conditions[match[0, 0] if len(match) else 0].clone()


def switched(nets, latent, conditions, names, n_noise=3):
    """Faces of the same noise (the samples figure's first vectors) for the base vector and for it
    with each of SWITCHED (those among `names`) switched: uint8 (columns x n_noise x 3 x 64 x 64),
    and the columns' labels."""
    shown = [n for n in SWITCHED if n in names]
    base, index = base_vector(conditions, names, shown), {n: i for i, n in enumerate(names)}
    vectors, labels = [base], ["as given"]
    for name in shown:
        y = base.clone()
        y[index[name]] = -y[index[name]]
        vectors.append(y)
        labels.append(("+ " if y[index[name]] > 0 else "not ") + name.replace("_", " "))
    z = D.fixed_noise(latent, n_noise)
    return torch.stack([nets.decode(z, y.expand(n_noise, -1)) for y in vectors]), labels


def conditional(runs_dir="build/conditional", figures="build/figures", data=None, profile="cpu", cache="build/cache",
                seeds=SEEDS, progress=True, **shrink):
    """Train (or resume) the conditional models into runs_dir/<model>, then score them; writes
    figures/conditional.json and figures/conditional.png and returns the markdown table. shrink
    (epochs, limit, ...) sizes every run alike, for short probes."""
    found = D.attribute_split(data)
    if found is None:
        raise LabkitError("the conditional models need CelebA and its list_attr_celeba*.txt beside the data "
                          "(--data or LABKIT_DATA)")
    names, _, conditions = found
    runs_dir, figures = Path(runs_dir), Path(figures)
    for model in CONDITIONAL:
        training_loop(runs_dir / model, resume=True, model=model, profile=profile, data=data, progress=progress,
                      **shrink)
    t0 = time.time()
    judge, record = J.cached_judge(data, cache, progress=progress)
    held_out, _ = D.holdout_set(data)
    judged = torch.tensor([record["attributes"][n]["verdict"] == "judged" for n in names])
    loaded = {m: load_nets(runs_dir / m) for m in CONDITIONAL}
    generators = {CONDITIONAL[m].title: drawer(nets, o["latent"]) for m, (nets, o) in loaded.items()}
    rows = score_table(generators, lambda faces: J.predict(judge, faces), held_out, conditions, names, judged, seeds)
    for m in CONDITIONAL:
        stats = Run(runs_dir / m).stats()
        rows[CONDITIONAL[m].title].update(model=m, steps=max(r.get("step", 0) for r in stats),
                                          train_minutes=round(max(r.get("seconds", 0) for r in stats) / 60, 1))
    figures.mkdir(parents=True, exist_ok=True)
    faces = {CONDITIONAL[m].title: switched(nets, o["latent"], conditions, names) for m, (nets, o) in loaded.items()}
    figure({title: grid for title, (grid, _) in faces.items()}, next(iter(faces.values()))[1],
           figures / "conditional.png")
    result = {"protocol": {"profile": profile, "training_seed": shrink.get("seed") or 0, "scored_on": len(conditions),
                           "seeds": list(seeds),
                           "judged": [n for n, j in zip(names, judged.tolist()) if j],
                           "scoring_seconds": round(time.time() - t0, 1), "judge": record["protocol"],
                           "switched": list(SWITCHED)},
              "rows": rows, "judge": record}
    (figures / "conditional.json").write_text(json.dumps(result, indent=2) + "\n")
    return markdown(result)


def figure(faces, labels, path=None):
    """The switched-attributes figure: per model (title -> columns x noise uint8 faces), a row per
    noise vector, a column per attribute vector (labels)."""
    named = {f"{title} ({i + 1})": grid[:, i] for title, grid in faces.items() for i in range(grid.shape[1])}
    return plots.rows(named, path, columns=len(labels), width=6.0, column_names=labels)


def markdown(result):
    """Two tables: a row per model, then the ceiling and the floor; the paper's cosine and MSE and
    the share of attributes read as given (mean ± spread over the seeds); then how well faces
    follow each attribute of the figure."""
    p, rows = result["protocol"], result["rows"]
    attributes = [a for a in p["switched"] if a in next(iter(rows.values()))["followed"]]
    # pandoc sizes the PDF's columns by these dashes
    scores = ["| model | cosine ↑ | MSE ↓ | attributes read as given ↑ | training minutes |",
              "|" + "|".join("-" * w for w in (24, 14, 14, 14, 9)) + "|"]
    follow = ["| model | " + " | ".join(a.replace("_", " ") for a in attributes) + " |",
              "|" + "|".join("-" * w for w in (24, *[8] * len(attributes))) + "|"]
    for title, r in rows.items():
        cells = [f"{r[k]:.3f} ± {r[f'{k}_sd']:.3f}" if r[f"{k}_sd"] else f"{r[k]:.3f}"
                 for k in ("cosine", "mse", "agreement")]
        cells.append(f"{r['train_minutes']:.1f}" if "train_minutes" in r else "")
        scores.append(f"| {title} | " + " | ".join(cells) + " |")
        follow.append(f"| {title} | " + " | ".join(f"{r['followed'][a]:.2f}" for a in attributes) + " |")
    note = (f"{p['scored_on']:,} faces a row, one per held-out face's attribute vector; ± the standard deviation over "
            f"{len(p['seeds'])} noise seeds (the floor: over as many shuffles). Scores over the {len(p['judged'])} "
            "attributes the judge reads.")
    return ("\n".join(scores) + f"\n\n{note}\n\n" + "\n".join(follow) +
            "\n\nHow well the faces follow each attribute: the mean of the share of faces drawn with it that the judge "
            "reads with it and of those drawn without read without (0.5: ignored).\n")


def judge_table(record):
    """The judge's accuracy per attribute, two attributes to a row, the judged ones first; * marks
    the attributes not readable, † those too rare."""
    mark = {"judged": "", "not readable": " *", "too rare": " †"}
    cells = [f"{n.replace('_', ' ')}{mark[r['verdict']]} | {r['accuracy']:.1%} | {r['majority']:.1%}"
             for n, r in J.ordered(record)]
    half = (len(cells) + 1) // 2
    lines = ["| attribute | judge | majority | attribute | judge | majority |",
             "|" + "|".join("-" * w for w in (20, 7, 8, 20, 7, 8)) + "|"]  # pandoc's column widths
    lines += [f"| {a} | {b} |" for a, b in zip(cells[:half], cells[half:] + [" | | "])]
    return "\n".join(lines) + "\n"


def reading(result):
    """What the table says, as markdown bullets computed from it: where each model lies between
    the floor and the ceiling, which follows the attributes best and by how much against the
    seeds' spread, and how that compares with the paper's finding."""
    rows = result["rows"]
    ceiling, floor = rows[CEILING], rows[FLOOR]
    models = sorted((t for t in rows if t not in (CEILING, FLOOR)), key=lambda t: -rows[t]["cosine"])
    share = {t: (rows[t]["cosine"] - floor["cosine"]) / max(ceiling["cosine"] - floor["cosine"], 1e-9) for t in models}
    lines = [f"- From the floor's cosine {floor['cosine']:.3f} (the condition ignored) to the ceiling's "
             f"{ceiling['cosine']:.3f} (real faces): " + ", ".join(f"{t} closes {share[t]:.0%} of the way"
                                                                    for t in models) + "."]
    if len(models) > 1:
        best, second = models[:2]
        margin = rows[best]["cosine"] - rows[second]["cosine"]
        spread = max(rows[best]["cosine_sd"], rows[second]["cosine_sd"])
        lowest_mse = min(models, key=lambda t: rows[t]["mse"])
        lines.append(f"- Best by cosine: {best}, {margin:.3f} above {second} "
                     f"({'well beyond' if margin > 3 * spread else 'within a few times'} the seeds' spread of "
                     f"{spread:.3f}); lowest MSE: {lowest_mse}.")
        vaegan = next((t for t in models if t.endswith("VAE-GAN")), None)
        if vaegan:
            agrees = best == vaegan and lowest_mse == vaegan
            lines.append("- The paper found the VAE/GAN's faces closest to their attributes: "
                         + ("so they are here, by both scores." if agrees else
                            f"not here, where the order by cosine is {', '.join(models)}."))
    return "\n".join(lines) + "\n"
