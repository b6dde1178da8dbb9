"""The attribute judge: a small CNN that reads CelebA's 40 binary attributes off a 64x64 face.

The paper's one table asks whether faces drawn for an attribute vector have those attributes, as
read by an independently trained predictor. This is that predictor: trained once on the training
faces only (never the held-out ones it is scored on), cached like the Inception statistics, and
reported per attribute on the held-out faces beside the majority-class baseline, which many CelebA
attributes come close to by being rare.

    python -m labkit judge --data data/       # trains once, then reads its cache; prints the table
"""
import hashlib
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from labkit import LabkitError, data as D

EPOCHS = 8
BATCH = 64
LR = 1e-3
RARE = 0.05      # an attribute on under 5% (or over 95%) of the held-out faces is too rare to judge
READABLE = 0.7   # balanced accuracy (mean of the hit rates on faces with and without) the judge needs
VERSION = 2  # bump when the network or its training changes: the cache key holds it


class Judge(nn.Module):
    """Faces (B, 3, 64, 64) in [-1, 1] -> one logit per attribute: four stride-2 convolutions
    (64 -> 4 px) with BatchNorm and ReLU, then a linear layer."""

    def __init__(self, n_attributes=40, width=32):
        super().__init__()
        layers, c = [], 3
        for cout in (width, 2 * width, 4 * width, 8 * width):
            layers += [nn.Conv2d(c, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
            c = cout
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Dropout(0.3), nn.Linear(c * 4 * 4, n_attributes))

    def forward(self, x):
        return self.net(x)


def scored_faces(data=None):
    """(training labels, held-out faces, their labels, attribute names): labels 0/1 in CelebA id
    order, the held-out faces after the training ones (prepare's split). The training faces are
    counted, not read: only training the judge reads them."""
    found = D.attribute_split(data)
    if found is None:
        raise LabkitError("the attribute judge needs CelebA and its list_attr_celeba*.txt beside the data "
                          "(--data or LABKIT_DATA)")
    names, train, held = found
    held_out, _ = D.holdout_set(data)
    return (train > 0).float(), held_out, (held > 0).float(), names


def train_judge(images, labels, epochs=EPOCHS, seed=0, progress=True):
    """A Judge trained on uint8 `images` and 0/1 `labels` (N, attributes), with horizontal flips;
    in eval mode. Each attribute's faces that have it weigh as much as those that do not (capped
    at 20x): rare attributes are then read, not predicted absent (30 judged instead of 20 at
    CelebA's 8,000 faces, docs/evaluation.md)."""
    from tqdm.auto import tqdm
    torch.manual_seed(seed)
    net, draw = Judge(labels.shape[1]), torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), LR)
    positive = labels.mean(0)
    pos_weight = ((1 - positive) / positive.clamp(min=1e-3)).clamp(max=20)
    steps = len(images) // BATCH
    bar = tqdm(total=epochs * steps, desc="attribute judge", unit="step", disable=not progress)
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=draw)
        for i in range(steps):
            idx = order[i * BATCH:(i + 1) * BATCH]
            x = D.to_float(images[idx])
            flip = torch.rand(len(idx), generator=draw) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            loss = F.binary_cross_entropy_with_logits(net(x), labels[idx], pos_weight=pos_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.update()
            if i % 50 == 0:  # reading the loss waits for the step: not every step
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    return net.eval()


@torch.no_grad()
def predict(net, images, batch=500):
    """The judge's probability of each attribute for uint8 images, (N, attributes)."""
    return torch.cat([torch.sigmoid(net(D.to_float(images[i:i + batch]))) for i in range(0, len(images), batch)])


def accuracy(probs, labels, names, train_labels):
    """Per attribute: the judge's accuracy on these faces, the majority-class baseline (the class
    most training faces have, always predicted), its balanced accuracy (which a rare attribute's
    majority class cannot inflate), the positive rate, and the verdict: judged, too rare, or not
    readable (the judge reads it little better than a coin on the faces that have it)."""
    said, truth = probs > 0.5, labels.bool()
    majority = train_labels.mean(0) > 0.5
    correct = (said == truth).float().mean(0)
    baseline = (truth == majority).float().mean(0)
    hits = ((said & truth).sum(0) / truth.sum(0).clamp(min=1) + (~said & ~truth).sum(0) / (~truth).sum(0).clamp(min=1))
    rate = labels.mean(0)
    rows = {}
    for i, name in enumerate(names):
        balanced = hits[i].item() / 2
        verdict = ("too rare" if not RARE <= rate[i] <= 1 - RARE else
                   "not readable" if balanced < READABLE else "judged")
        rows[name] = {"accuracy": round(correct[i].item(), 4), "majority": round(baseline[i].item(), 4),
                      "balanced": round(balanced, 4), "positive_rate": round(rate[i].item(), 4), "verdict": verdict}
    return rows


def cached_judge(data=None, cache_dir="build/cache", epochs=EPOCHS, seed=0, progress=True):
    """(the trained judge, its record): trained once per data file and setting and kept in
    cache_dir (weights-only, with how it was trained), then read from there. The record is the
    per-attribute accuracy on the held-out faces, measured on each call (seconds)."""
    train_labels, held_out, held_labels, names = scored_faces(data)
    source = f"{D.resolve_data(data)}|{len(train_labels)}|{len(held_labels)}|{epochs}|{seed}|v{VERSION}"
    key = hashlib.sha1(source.encode()).hexdigest()[:12]
    weights, trained_file = Path(cache_dir) / f"judge-{key}.pt", Path(cache_dir) / f"judge-{key}.json"
    net = Judge(len(names))
    if weights.is_file() and trained_file.is_file():
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        net.eval()
        trained = json.loads(trained_file.read_text())
    else:
        t0 = time.time()
        net = train_judge(D.training_set(data)[0], train_labels, epochs, seed, progress)
        trained = {"trained_on": len(train_labels), "epochs": epochs, "seed": seed,
                   "seconds": round(time.time() - t0, 1), "source": source}
        weights.parent.mkdir(parents=True, exist_ok=True)
        tmp = weights.with_suffix(".tmp")
        torch.save(net.state_dict(), tmp)
        os.replace(tmp, weights)
        trained_file.write_text(json.dumps(trained, indent=2) + "\n")  # last: the cache is whole when it is there
    rows = accuracy(predict(net, held_out), held_labels, names, train_labels)
    judged = [r for r in rows.values() if r["verdict"] == "judged"]

    def mean(key):  # over the judged attributes; None when the judge reads none
        return round(sum(r[key] for r in judged) / len(judged), 4) if judged else None
    record = {"protocol": dict(trained, scored_on=len(held_labels), rare=RARE, readable=READABLE),
              "mean_accuracy_judged": mean("accuracy"), "mean_majority_judged": mean("majority"), "attributes": rows}
    return net, record


def ordered(record):
    """The record's attributes as (name, row): judged first, by balanced accuracy, then the others."""
    order = {"judged": 0, "not readable": 1, "too rare": 2}
    return sorted(record["attributes"].items(), key=lambda kv: (order[kv[1]["verdict"]], -kv[1]["balanced"]))


def table(record):
    """The judge's per-attribute accuracy as markdown: judged attributes first, by balanced accuracy."""
    lines = ["| attribute | judge | majority class | balanced | on faces | verdict |", "|---|---|---|---|---|---|"]
    for name, r in ordered(record):
        lines.append(f"| {name} | {r['accuracy']:.1%} | {r['majority']:.1%} | {r['balanced']:.1%} | "
                     f"{r['positive_rate']:.1%} | {r['verdict']} |")
    p = record["protocol"]
    n_judged = sum(r["verdict"] == "judged" for r in record["attributes"].values())
    means = (f": judge {record['mean_accuracy_judged']:.1%} against the majority class's "
             f"{record['mean_majority_judged']:.1%}" if n_judged else "")
    lines.append(f"\nTrained on {p['trained_on']:,} training faces ({p['epochs']} epochs, {p['seconds']} s), "
                 f"scored on {p['scored_on']:,} held-out faces. {n_judged} attributes judged (on {p['rare']:.0%}-"
                 f"{1 - p['rare']:.0%} of the faces, balanced accuracy at least {p['readable']:.0%}){means}.")
    return "\n".join(lines)
