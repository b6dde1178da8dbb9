"""The report: papermill runs the numbered notebooks, nbconvert exports one PDF (and HTML).

The prose lives in the notebooks' markdown cells; this module only runs them, assembles their
cells in the handout's report structure (1 Introduction, 2 Experiment setups, 3 Results,
4 Discussion, 5 Demo) and exports the result.
"""
import shutil
import sys
import time
from pathlib import Path

import torch

from labkit import data as D
from labkit.models import MODELS
from labkit.options import evaluation
from labkit.runs import provenance

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def choose_profile(profile, data):
    if profile != "auto":
        return profile
    has_celeba = (path := D.resolve_data(data)) is not None and path.is_file()
    return "full" if torch.cuda.is_available() and has_celeba else "smoke"


def plan(evaluation_sizes):
    """(notebook, executed copy, its own parameters, the report heading placed before it)."""
    yield "00_introduction", "00_introduction.ipynb", {}, None
    yield "01_data", "01_data.ipynb", {}, None
    for i, model in enumerate(MODELS):
        heading = ("## Training runs\n\n" if i == 0 else "") + f"### {MODELS[model]['title']}"
        yield "02_train", f"02_train_{model}.ipynb", dict(model=model), heading
    yield "03_results", "03_results.ipynb", evaluation_sizes, "# Results"
    yield "04_discussion", "04_discussion.ipynb", {}, "# Discussion"
    yield "05_demo", "05_demo.ipynb", {}, "# Demo"


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
    settings = {k: v for k, v in dict(epochs=epochs, limit=limit).items() if v is not None}
    common = dict(data=str(data_path) if data_path else None, profile=profile, settings=settings,
                  runs_dir=str(build / "runs"), figures_dir=str(figures))
    steps = list(plan(evaluation(profile, eval_n=eval_n, n_ref=n_ref)))
    for name, out_name, parameters, _ in steps:
        run_notebook(name, out_name, build, dict(common, **parameters))
    facts = dict(profile=profile, data=common["data"] or "synthetic faces (no CelebA on this machine)",
                 **provenance(), minutes=round((time.time() - t0) / 60, 1))
    return export(assemble(build, steps, facts), build)


def _report_cells(nb):
    """A notebook's cells as the report shows them: no code, no title (the notebook's first
    cell, for readers of the notebook itself), no parameters, progress bars or widgets."""
    import nbformat
    cells = []
    for cell in nb.cells[1:]:
        if cell.cell_type == "markdown":
            cells.append(nbformat.v4.new_markdown_cell(cell.source))
        elif cell.cell_type == "code" and "parameters" not in cell.metadata.get("tags", []):
            keep = [o for o in cell.get("outputs", [])
                    if not (o.output_type == "stream" and o.name == "stderr")
                    and "application/vnd.jupyter.widget-view+json" not in o.get("data", {})]
            if keep:
                cells.append(nbformat.v4.new_code_cell("", outputs=keep))
    return cells


def assemble(build, steps, facts):
    """One notebook in the handout's report structure, from the executed notebooks."""
    import nbformat
    md = nbformat.v4.new_markdown_cell
    cells = [md(" · ".join(f"**{k}** {v}" for k, v in facts.items()))]
    for _, out_name, _, heading in steps:
        if heading:
            cells.append(md(heading))
        cells += _report_cells(nbformat.read(build / out_name, as_version=4))
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
