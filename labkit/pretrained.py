"""Published weights: the networks of the published comparison, ready without CelebA or training.

    from labkit import pretrained
    nets, info = pretrained.load("vaegan")        # figures/cpu/weights/vaegan.safetensors
    faces = nets.decode(info["noise"])            # the samples figure's faces
    python -m labkit sample --pretrained vaegan   # a grid of samples

Each model's file (safetensors: loading it runs no code) holds what sampling and reconstruction
need: the decoder (the GAN's generator) and, for models with an encoder, the encoder's convolutions
and its mean branch (figures reconstruct from the posterior mean; the log-variance branch is
training's only), as the run averaged them (option ema). Weights are stored in float16, BatchNorm
statistics in float32. Beside them: the noise the samples figure decodes, and for models with an
encoder the directions the demo moves along (principal directions of the encoded training faces,
CelebA's attribute vectors). Its metadata holds the run's settings and where it came from.
"""
import json
from pathlib import Path

import torch
from torch import nn

from labkit import LabkitError, data as D, latent
from labkit.models import MODELS, Nets
from labkit.options import learned_settings
from labkit.runs import Run, load_nets, provenance

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "figures" / "cpu" / "weights"
FORMAT = "labkit-pretrained-1"
KEPT = ("dec.", "enc.convs.", "enc.mean.")  # what sampling and reconstruction read
N_NOISE, N_COMPONENTS = 16, 5


class TrainingOnly(nn.Module):
    """Stands where a published encoder's log-variance branch was: reconstruction never reads it."""

    def forward(self, h):
        raise LabkitError("published weights hold the posterior mean only: they sample and reconstruct, they do not "
                          "train (train a run for that: python -m labkit train)")


def export(run, out, data=None, dtype=torch.float16, attributes=None):
    """Write a trained run's published file to `out`; returns the path. Directions come from the
    training faces of `data` (and CelebA's attributes beside them, when there)."""
    from safetensors.torch import save_file
    nets, o = load_nets(run)
    tensors = {f"nets.{k}": (v.to(dtype) if v.is_floating_point() and "running_" not in k else v).contiguous()
               for k, v in nets.state_dict().items() if k.startswith(KEPT)}
    tensors["noise"] = D.fixed_noise(o["latent"], N_NOISE)
    if nets.has_encoder:
        train = D.training_set(data)[0]
        directions = latent.principal_directions(nets, train, k=N_COMPONENTS)
        found = attributes if attributes is not None else D.attributes(data)
        if found is not None:
            names, rows = found
            directions.update(latent.attribute_vectors(nets, train, rows, names, names))
        tensors.update({f"directions.{name}": v.float().contiguous() for name, v in directions.items()})
    settings = dict(learned_settings(o), model=o["model"], feature_layer=o.get("feature_layer", 4))
    metadata = {"format": FORMAT, "model": o["model"], "settings": json.dumps(settings),
                "trained_on": o.get("data_used", ""),
                # the code that last ran the run (options.json), else this checkout's
                "commit": Run(run).options().get("provenance", {}).get("commit") or provenance()["commit"] or "",
                "dtype": str(dtype).removeprefix("torch.")}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, out, metadata=metadata)
    return out


def path_of(model_or_path):
    """A published model's file by model name (figures/cpu/weights/<model>.safetensors), or a path."""
    path = Path(model_or_path)
    if path.suffix == ".safetensors":
        return path
    if model_or_path not in MODELS:
        raise LabkitError(f"unknown model {model_or_path!r}; published: "
                          f"{', '.join(p.stem for p in sorted(PUBLISHED.glob('*.safetensors'))) or 'none'}")
    return PUBLISHED / f"{model_or_path}.safetensors"


def load(model_or_path, device="cpu"):
    """(networks in eval mode, info): the published networks of a model (or a .safetensors file),
    and info with its settings, metadata, the samples figure's noise and the demo's directions."""
    from safetensors import SafetensorError
    from safetensors.torch import safe_open
    path = path_of(model_or_path)
    if not path.is_file():
        raise LabkitError(f"{path}: no published weights (python -m labkit publish writes them)")
    try:
        with safe_open(path, framework="pt") as f:
            metadata, tensors = f.metadata() or {}, {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise LabkitError(f"{path}: not a safetensors file ({e})") from None
    if metadata.get("format") != FORMAT:
        raise LabkitError(f"{path}: not labkit's published weights (format {metadata.get('format')!r})")
    o = json.loads(metadata["settings"])
    nets = Nets(o["model"], o["latent"], o["width"], o.get("init", "normal"), o["feature_layer"])
    for name in [n for n, _ in nets.named_children() if n not in ("enc", "dec")]:
        delattr(nets, name)  # the discriminator is training's only
    if nets.has_encoder:
        nets.enc.logvar = TrainingOnly()
    nets.load_state_dict({k.removeprefix("nets."): v for k, v in tensors.items() if k.startswith("nets.")})
    info = {"settings": o, "metadata": metadata, "noise": tensors["noise"],
            "directions": {k.removeprefix("directions."): v for k, v in tensors.items() if k.startswith("directions.")}}
    return nets.to(device).eval(), info


CELEBA_LICENCE = """CelebA (Liu et al., ICCV 2015, https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html) is
available for non-commercial research purposes only; these weights are derived from it and are
shared on the same terms: non-commercial research only. The code that made them is MIT-licensed."""


def model_card(folder, metrics, facts):
    """The published weights' README: what each file holds, the data and its licence, the settings,
    the metrics with their protocol, and where they came from."""
    from labkit.metrics import table
    from labkit.options import settings_table
    files = sorted(Path(folder).glob("*.safetensors"), key=lambda p: list(MODELS).index(p.stem)
                   if p.stem in MODELS else len(MODELS))
    infos = {p.stem: load(p)[1] for p in files}
    rows = []
    for path in files:
        info = infos[path.stem]
        holds = "decoder and encoder (its mean)" if info["directions"] else "generator (the decoder)"
        directions = f"; {len(info['directions'])} directions" if info["directions"] else ""
        rows.append(f"| `{path.name}` | {MODELS[path.stem].title} | {holds}{directions} | "
                    f"{path.stat().st_size / 2**20:.1f} MiB |")
    meta = next(iter(infos.values()))["metadata"]
    settings = settings_table({m: info["settings"] for m, info in infos.items()})
    p = metrics["protocol"]
    return f"""# Published weights: the `{facts['profile']}` comparison

The networks of the comparison in `figures/{facts['profile']}/`, as its figures and metrics were made
from them: each run's moving average of the encoder and decoder (option `ema`), with what sampling
and reconstruction need. Weights are float16, BatchNorm statistics float32 (what that moves:
`docs/weights.md`). Loading runs no code (safetensors).

```python
from labkit import pretrained
nets, info = pretrained.load("vaegan")           # eval mode, on the CPU
faces = nets.decode(info["noise"])              # the samples figure's faces, uint8
codes = nets.encode(faces)                      # posterior means (models with an encoder)
```

or `python -m labkit sample --pretrained vaegan`, or `make demo`.

| file | model | holds | size |
| --- | --- | --- | --- |
{chr(10).join(rows)}

Each file also holds `noise` (the 16 codes of the samples figure) and, for models with an encoder,
`directions.*`: the 5 strongest principal directions of the encoded training faces (`PC1`-`PC5`,
one standard deviation each) and the 40 attribute vectors of CelebA (mean code of training faces
with the attribute minus without). Its metadata holds the run's settings (`settings`), the data
(`trained_on`) and the commit.

## Data and licence

Trained on the first 8,000 aligned CelebA faces (ids 000001-008000, cropped as the VAE-GAN
authors did and resized to 64x64); ids 008001-010000 are held out, never trained on, and used for
every metric below.

{CELEBA_LICENCE}

## Settings

{settings}
## Metrics

{table(metrics)}
FID floor: {p['floor']} (FID {p['floor_fid']:.1f}); Inception weights `{Path(p['weights']).name}`.
Trained and evaluated with `make report` (profile `{facts['profile']}`) on {facts['device']}, torch
{facts['torch']}, commit {meta.get('commit') or facts.get('commit')}.
"""
