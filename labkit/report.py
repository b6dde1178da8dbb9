"""The report: papermill runs the numbered notebooks, nbconvert exports one PDF (and HTML).

Sections follow the handout's report spec: 1 Introduction, 2 Experiment setups (A: how the
VAE-GAN is implemented, B: which generator loss), 3 Results, 4 Discussion, 5 Demo.
"""
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from labkit import LabkitError, data as D
from labkit.models import MODELS
from labkit.train import git_commit

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
MODEL_ORDER = ("vae", "gan", "vaegan")
# Generated-image counts for evaluation; the held-out reference is all of it in "full".
EVAL = {"smoke": dict(eval_n=64, n_ref=64), "full": dict(eval_n=10_000, n_ref=None)}


def choose_profile(profile, data):
    if profile != "auto":
        return profile
    has_celeba = (path := D.resolve_data(data)) is not None and path.is_file()
    return "full" if torch.cuda.is_available() and has_celeba else "smoke"


def run_notebook(name, out_name, build, parameters):
    import papermill as pm
    print(f"[labkit] {name} -> {build / out_name}", flush=True)
    pm.execute_notebook(NOTEBOOKS / f"{name}.ipynb", build / out_name, parameters=parameters,
                        cwd=str(NOTEBOOKS), kernel_name="python3", progress_bar=True, log_output=False)


def build_report(profile="auto", build="build", data=None, epochs=None, limit=None, eval_n=None, n_ref=None):
    """Run every notebook headlessly, then export build/report.{html,pdf}. Returns the paths."""
    t0 = time.time()
    profile = choose_profile(profile, data)
    build = Path(build).resolve()
    build.mkdir(parents=True, exist_ok=True)
    # A smoke run never overwrites the committed results of real runs in figures/.
    figures = ROOT / "figures" if profile == "full" else build / "figures"
    data_path = D.resolve_data(data)
    if data_path is None:
        print(f"[labkit] {D.GET_CELEBA}", flush=True)
    common = dict(data=str(data_path) if data_path else None, profile=profile, runs_dir=str(build / "runs"),
                  figures_dir=str(figures))
    evaluation = dict(EVAL[profile], **{k: v for k, v in dict(eval_n=eval_n, n_ref=n_ref).items() if v})
    run_notebook("01_data", "01_data.ipynb", build, common)
    for model in MODEL_ORDER:
        run_notebook("02_train", f"02_train_{model}.ipynb", build,
                     dict(common, model=model, epochs=epochs, limit=limit))
    run_notebook("03_results", "03_results.ipynb", build, dict(common, **evaluation))
    run_notebook("04_discussion", "04_discussion.ipynb", build, common)
    run_notebook("05_demo", "05_demo.ipynb", build, common)
    provenance = dict(profile=profile, data=common["data"] or "synthetic faces (no CelebA on this machine)",
                      device=torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU",
                      commit=git_commit(), torch=torch.__version__, minutes=round((time.time() - t0) / 60, 1))
    return export(assemble(build, provenance), build)


# ----------------------------------------------------------------------------------------------
# prose generated from the runs

INTRO = """\
A variational autoencoder (VAE) learns an encoder q(z|x) and a decoder p(x|z) by maximising the
evidence lower bound, whose reconstruction term is an element-wise (pixel) likelihood. Pixel-wise
errors punish small translations heavily and reward averaging, so VAE reconstructions and samples
are blurry. A generative adversarial network (GAN) produces sharp images but has no encoder and
is hard to train. Larsen et al. (2016), *Autoencoding beyond pixels using a learned similarity
metric*, join the two: the decoder of a VAE is also the generator of a GAN, and the VAE's
reconstruction error is measured in the feature space of the GAN's discriminator (its layer l),
a similarity metric learned from data instead of fixed pixels.

This report reproduces that VAE-GAN with the lab handout's networks and hyper-parameters, and
compares it with a beta-VAE (hw2) and a GAN (hw3) trained on the same faces with the same
networks: the VAE is the VAE-GAN's encoder and decoder, the GAN its decoder and discriminator.
"""


def setup_text(options):
    """2.A and 2.B, from the options every run recorded."""
    o = options["vaegan"]
    g = {"nonsaturating": "the **non-saturating** loss $\\mathcal{L}_G = E_{x\\sim p_g}[-\\log D(x)]$ "
                          "(the handout's second form)",
         "saturating": "the **saturating** loss $\\mathcal{L}_G = E_{x\\sim p_g}[\\log(1 - D(x))] = -\\mathcal{L}_D$ "
                       "(the handout's first form, as in Algorithm 1)"}
    used = {m: options[m]["g_loss"] for m in ("gan", "vaegan")}
    loss_line = (f"Both the GAN and the VAE-GAN use {g[used['gan']]}." if used["gan"] == used["vaegan"] else
                 f"The GAN uses {g[used['gan']]}; the VAE-GAN uses {g[used['vaegan']]}.")
    return f"""\
# Experiment setups

## How the VAE-GAN is implemented

- **Networks**: the handout's tables exactly (kernel 5; encoder conv 64-128-256, two FC-2048 +
  BN + ReLU branches for mean and log-variance; decoder FC 8x8x256, deconvs 256-128-32-3, tanh;
  discriminator conv 32-128-256-256, FC 1024 + ELU, FC 1 + sigmoid), width x{o['width']:g},
  latent {o['latent']}.
- **One step (Algorithm 1)**: $\\mu, \\log\\sigma^2 = \\mathrm{{Enc}}(x)$, $z = \\mu + \\sigma\\epsilon$,
  $\\tilde x = \\mathrm{{Dec}}(z)$, $x_p = \\mathrm{{Dec}}(z_p)$ with $z_p \\sim N(0, I)$; one discriminator pass over
  $[x, \\tilde x, x_p]$ gives the logits and the layer-$l$ features $\\mathrm{{Dis}}_l$ (the 4th conv's output,
  before its BatchNorm and ReLU, as in the paper).
- **Losses**: $\\mathcal{{L}}_{{prior}}$ = KL$(q(z|x)\\,\\|\\,N(0,I))$; $\\mathcal{{L}}_{{llike}}^{{Dis_l}} = \\tfrac12\\,
  \\mathrm{{mean}}\\,(\\mathrm{{Dis}}_l(x) - \\mathrm{{Dis}}_l(\\tilde x))^2$ (Gaussian with identity covariance); the GAN
  loss takes $x$ as real and both $\\tilde x$ and $x_p$ as fake. Reconstruction terms are means over
  elements and the KL is divided by the same element count, so $\\gamma$ = {o['gamma']:g} weighs a
  per-element feature error against a per-image GAN loss.
- **Three updates**: encoder $\\leftarrow \\nabla(\\beta\\mathcal{{L}}_{{prior}} + \\mathcal{{L}}_{{llike}})$ with $\\beta$ = {o['beta']:g};
  decoder $\\leftarrow \\nabla(\\gamma\\,\\mathcal{{L}}_{{llike}} + \\mathcal{{L}}_G)$; discriminator $\\leftarrow \\nabla\\mathcal{{L}}_D$.
  Each gradient is taken from its own loss only, at the same parameters, then all three
  optimizers ({o['optimizer']}, lr {o['lr']:g}) step. Tests check each network receives exactly its loss.
- **Training**: {o['epochs']} epochs, batch {o['batch']}, profile *{o['profile']}*, seed {o['seed']};
  data: {o['data_used']}.

## Which generator loss was used

{loss_line} The discriminator minimises $\\mathcal{{L}}_D = -E[\\log D(x)] - E[\\log(1 - D(x_{{fake}}))]$,
computed from logits with BCE-with-logits (the sigmoid lives inside the loss).
"""


def discussion_text(metrics):
    """Numbers-first comparison sentences from a metrics JSON (see labkit.metrics)."""
    runs = metrics["runs"]
    vae, gan, vg = (runs.get(m, {}) for m in MODEL_ORDER)
    real = metrics["protocol"]["sharpness_real"]
    lines = []
    if vae and vg:
        ratio = vg["sharpness_recon"] / max(vae["sharpness_recon"], 1e-9)
        lines.append(f"- **Sharpness.** Real held-out faces have a Laplacian variance of {real:.0f}. The VAE's "
                     f"reconstructions reach {vae['sharpness_recon']:.0f} and the VAE-GAN's {vg['sharpness_recon']:.0f} "
                     f"({ratio:.2f}x the VAE's). Pixel-wise likelihood rewards the average of plausible images, "
                     f"which is blur; the feature-wise loss and the adversarial term do not.")
        lines.append(f"- **Fidelity.** Pixel MSE of reconstructions: VAE {vae['mse']:.4f}, VAE-GAN {vg['mse']:.4f}; "
                     f"SSIM {vae['ssim']:.3f} vs {vg['ssim']:.3f}. The VAE optimises pixel error directly, so a lower "
                     f"pixel error for the VAE is expected even when the VAE-GAN looks sharper: pixel metrics and "
                     f"perceived quality disagree, which is the paper's point.")
    if vae and gan and vg:
        fids = {MODELS[m]["title"]: runs[m]["fid_prior"] for m in MODEL_ORDER}
        best = min(fids, key=fids.get)
        lines.append("- **Samples from the prior.** FID against held-out faces: " +
                     ", ".join(f"{k} {v:.1f}" for k, v in fids.items()) + f" (lower is better; best: {best}).")
        lines.append(f"- **Sharpness of samples.** VAE {vae['sharpness_prior']:.0f}, GAN {gan['sharpness_prior']:.0f}, "
                     f"VAE-GAN {vg['sharpness_prior']:.0f}.")
    if vae and vg and "fid_expost" in vg:
        lines.append(f"- **Ex-post Gaussian sampling** (a Gaussian fitted to encoded training faces instead of "
                     f"N(0, I)): FID VAE {vae['fid_expost']:.1f}, VAE-GAN {vg['fid_expost']:.1f}, against "
                     f"{vae['fid_prior']:.1f} and {vg['fid_prior']:.1f} from the prior: the gap measures how far the "
                     f"aggregate posterior is from the prior.")
    p = metrics["protocol"]
    lines.append(f"\n*Protocol: {p['generated_count']} generated vs {p['reference_count']} held-out images "
                 f"({p['reference']}); features: {p['feature_extractor']}, weights {Path(p['weights']).name}.*")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# assembly and export

# Top-level headings only: LaTeX numbers them 1-5 as in the handout's report spec.
SECTIONS = [("03_results.ipynb", "# Results"), ("04_discussion.ipynb", "# Discussion"), ("05_demo.ipynb", "# Demo")]


def _report_cells(nb):
    """A notebook's cells as the report shows them: no code, no title, no progress bars or widgets."""
    import nbformat
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            if not cell.source.lstrip().startswith("# "):
                cells.append(nbformat.v4.new_markdown_cell(cell.source))
        elif cell.cell_type == "code" and "parameters" not in cell.metadata.get("tags", []):
            keep = [o for o in cell.get("outputs", [])
                    if not (o.output_type == "stream" and o.name == "stderr")
                    and "application/vnd.jupyter.widget-view+json" not in o.get("data", {})]
            if keep:
                cells.append(nbformat.v4.new_code_cell("", outputs=keep))
    return cells


def assemble(build, provenance):
    """One notebook in the handout's report structure, from the executed notebooks."""
    import nbformat
    md = nbformat.v4.new_markdown_cell
    options = {m: json.loads((build / "runs" / m / "options.json").read_text()) for m in MODEL_ORDER}
    cells = [md(" · ".join(f"**{k}** {v}" for k, v in provenance.items())),
             md("# Introduction\n\n" + INTRO), md(setup_text(options))]
    cells += _report_cells(nbformat.read(build / "01_data.ipynb", as_version=4))
    cells.append(md("## Training runs"))
    for m in MODEL_ORDER:
        cells.append(md(f"### {MODELS[m]['title']}"))
        cells += _report_cells(nbformat.read(build / f"02_train_{m}.ipynb", as_version=4))
    for name, heading in SECTIONS:
        cells.append(md(heading))
        cells += _report_cells(nbformat.read(build / name, as_version=4))
    nb = nbformat.v4.new_notebook(cells=cells, metadata={
        "title": "VAE-GAN: autoencoding beyond pixels — lab report", "authors": [{"name": "labkit"}]})
    nbformat.write(nb, build / "report.ipynb")
    return nb


def export(nb, build):
    """HTML always; PDF when xelatex and pandoc are present (see the README)."""
    from nbconvert import HTMLExporter, PDFExporter
    paths = {}
    html, _ = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True).from_notebook_node(nb)
    (build / "report.html").write_text(html)
    paths["html"] = build / "report.html"
    if shutil.which("xelatex") and shutil.which("pandoc"):
        pdf, _ = PDFExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True).from_notebook_node(nb)
        (build / "report.pdf").write_bytes(pdf)
        paths["pdf"] = build / "report.pdf"
    else:
        print("[labkit] xelatex/pandoc not found: wrote HTML only (see README for the PDF)", file=sys.stderr)
    return paths


def pdf_text(path):
    """The PDF's text (pdftotext when installed, else pypdf): for checks and tests."""
    if shutil.which("pdftotext"):
        return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout
    from pypdf import PdfReader
    return "\n".join(page.extract_text() or "" for page in PdfReader(path).pages)


def comparison(runs_dir, data, n=16):
    """What every comparison figure shows: each trained model, the same held-out faces, the same noise."""
    from labkit.train import fixed_noise, load_nets
    runs_dir = Path(runs_dir)
    missing = [m for m in MODEL_ORDER if not (runs_dir / m / "checkpoint.pt").is_file()]
    if missing:
        raise LabkitError(f"{runs_dir}: no trained run for {', '.join(missing)}: run 02_train.ipynb for each model first")
    nets = {m: load_nets(runs_dir / m)[0] for m in MODEL_ORDER}
    faces = D.grid_faces(D.resolve_data(data), n)
    noise = fixed_noise(nets["vaegan"].latent, n)
    return nets, faces, noise
