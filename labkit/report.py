"""The report: papermill runs the numbered notebooks, nbconvert exports one PDF (and HTML).

The prose lives in the notebooks' markdown cells; this module only runs them, assembles their
cells in the handout's report structure (1 Introduction, 2 Experiment setups, 3 Results,
4 Discussion, 5 Demo) and exports the result.
"""
import base64
import copy
import html
import io
import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import NamedTuple

import torch

from labkit import data as D
from labkit.models import MODELS
from labkit.options import evaluation
from labkit.runs import provenance

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def choose_profile(profile, data):
    """auto: the handout's full runs with a GPU and CelebA, the hour-long cpu profile with
    CelebA alone, else the smoke check on synthetic faces."""
    if profile != "auto":
        return profile
    if (path := D.resolve_data(data)) is None or not path.is_file():
        return "smoke"
    return "full" if torch.cuda.is_available() else "cpu"


class Step(NamedTuple):
    notebook: str            # which notebook of notebooks/
    executed: str            # the executed copy's name in the build folder
    parameters: dict         # its own papermill parameters, beside the common ones
    heading: str = None      # the report's heading before its cells
    in_report: bool = True   # False: the workbook's only


def plan(evaluation_sizes):
    """The notebooks in the order they run. Training (02_train, once per model) is the workbook's,
    not the report's: the report shows every run together in 03_results."""
    yield Step("00_introduction", "00_introduction.ipynb", {})
    yield Step("01_data", "01_data.ipynb", {})
    for model in MODELS:
        yield Step("02_train", f"02_train_{model}.ipynb", dict(model=model), in_report=False)
    yield Step("03_results", "03_results.ipynb", evaluation_sizes, "# Results")
    yield Step("04_discussion", "04_discussion.ipynb", {}, "# Discussion")
    yield Step("05_demo", "05_demo.ipynb", {}, "# Demo")


def run_notebook(name, out_name, build, parameters):
    """Execute one notebook. Its kernel talks over local sockets (IPC: no open TCP port, no
    warning about one); training progress reaches this console from the kernel's stderr."""
    import papermill as pm
    from jupyter_client.manager import AsyncKernelManager

    class LocalKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(transport="ipc", **kwargs)

    print(f"[labkit] {name} -> {build / out_name}", flush=True)
    pm.execute_notebook(NOTEBOOKS / f"{name}.ipynb", build / out_name, parameters=parameters, cwd=str(NOTEBOOKS),
                        kernel_name="python3", progress_bar=False, log_output=False,
                        kernel_manager_class=LocalKernelManager)


def build_report(profile="auto", build="build", data=None, epochs=None, limit=None, eval_n=None, n_ref=None):
    """Run every notebook headlessly, then export the report. Returns the paths written."""
    profile = choose_profile(profile, data)
    settings = {k: v for k, v in dict(epochs=epochs, limit=limit).items() if v is not None}
    build = Path(build).resolve()
    execute(profile, build, data, settings, eval_n, n_ref)
    return export(build)


def execute(profile, build, data, settings=None, eval_n=None, n_ref=None, note=None):
    """Run the notebooks into `build` (figures into build/figures: the committed results change
    only by `python -m labkit publish`) and record in build/report.json what the report's first
    line says (profile, data, provenance, this build's minutes, and `note`: why a job ran what it ran), the
    evaluation's sizes and the settings that overrode the profile's."""
    t0 = time.time()
    build.mkdir(parents=True, exist_ok=True)
    data_path = D.resolve_data(data)
    if data_path is None:
        print(f"[labkit] {D.GET_CELEBA}", flush=True)
    figures = build / "figures"
    common = dict(data=str(data_path) if data_path else None, profile=profile, settings=settings or {},
                  runs_dir=str(build / "runs"), figures_dir=str(figures))
    sizes = evaluation(profile, eval_n=eval_n, n_ref=n_ref)
    for step in plan(sizes):
        run_notebook(step.notebook, step.executed, build, dict(common, **step.parameters))
    facts = dict(profile=profile, data=common["data"] or "synthetic faces (no CelebA on this machine)",
                 # this build's wall time: one that resumed finished runs counts only what it ran
                 **provenance(), **{"build minutes": round((time.time() - t0) / 60, 1)},
                 **({"plan": note} if note else {}))
    record = dict(facts=facts, sizes=sizes, settings=settings or {})
    (build / "report.json").write_text(json.dumps(record, indent=2))
    return facts


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


def assemble(build):
    """One notebook in the handout's report structure, from the executed notebooks in `build`."""
    import nbformat
    md = nbformat.v4.new_markdown_cell
    record = json.loads((build / "report.json").read_text())
    cells = [md(" · ".join(f"**{k}** {v}" for k, v in record["facts"].items()))]
    for step in plan(record["sizes"]):
        if step.heading:
            cells.append(md(step.heading))
        if step.in_report:
            cells += _report_cells(nbformat.read(build / step.executed, as_version=4))
    number_figures(cells)
    nb = nbformat.v4.new_notebook(cells=cells, metadata={
        "title": "VAE-GAN: autoencoding beyond pixels — lab report", "authors": [{"name": "labkit"}]})
    nbformat.write(nb, build / "report.ipynb")
    return nb


def number_figures(cells):
    """Captions written "**Figure.**" in the notebooks become Figure 1, 2, ... in report order."""
    n = 0
    for cell in cells:
        texts = [cell] if cell.cell_type == "markdown" else [o.data for o in cell.get("outputs", [])
                                                            if "text/markdown" in o.get("data", {})]
        for holder in texts:
            key = "source" if holder is cell else "text/markdown"
            while "**Figure.**" in holder[key]:
                n += 1
                holder[key] = holder[key].replace("**Figure.**", f"**Figure {n}.**", 1)


# The HTML reads offline: no script from a CDN (require.js, MathJax, mermaid), math drawn as SVG.
OFFLINE_HTML = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}<style>img.math { vertical-align: middle; }</style>{%- endblock extra_css -%}
"""
# The PDF: figures at the size they were drawn (their PNG's dpi), at most the text's width and
# 0.8 of its height; Results and Discussion each start a page (sections 3 and 4).
PDF = r"""((*- extends 'latex/index.tex.j2' -*))
((*- block figure scoped -*))
    \begin{center}
    \adjustimage{max size={\linewidth}{0.8\textheight}}{((( filename )))}
    \end{center}
((*- endblock figure -*))
((* block margins *))
    \geometry{verbose,tmargin=0.9in,bmargin=0.9in,lmargin=1in,rmargin=1in}
    \let\labkitsection\section
    \renewcommand{\section}{\ifnum\value{section}>1 \ifnum\value{section}<4 \clearpage\fi\fi\labkitsection}
((* endblock margins *))
"""
MATH = re.compile(r"(?<![\\$])\$(?!\s)([^$\n]+?)(?<!\s)\$")


def svg_math(text):
    """Inline $...$ math as SVG images (matplotlib's mathtext), for a page that loads no MathJax."""
    from matplotlib import mathtext
    from matplotlib.font_manager import FontProperties

    def draw(m):
        buf = io.BytesIO()
        mathtext.math_to_image(f"${m.group(1)}$", buf, format="svg", prop=FontProperties(size=11))
        data = base64.b64encode(buf.getvalue()).decode()
        return f'<img class="math" alt="{html.escape(m.group(1))}" src="data:image/svg+xml;base64,{data}">'
    return MATH.sub(draw, text)


def offline_copy(nb):
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = svg_math(cell.source)
        for out in cell.get("outputs", []):
            if "text/markdown" in out.get("data", {}):
                out.data["text/markdown"] = svg_math(out.data["text/markdown"])
    return nb


def jpeg_copy(nb, quality=80):
    """The notebook with its PNG outputs as JPEG where that is smaller: grids of photographs
    shrink 3-5x, which keeps the committed PDF small; the figures stay PNG in figures/."""
    from PIL import Image
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            png = out.get("data", {}).get("image/png")
            if png is None:
                continue
            image = Image.open(io.BytesIO(base64.b64decode(png))).convert("RGBA")
            flat = Image.new("RGB", image.size, "white")
            flat.paste(image, mask=image.getchannel("A"))
            buf = io.BytesIO()
            flat.save(buf, "JPEG", quality=quality, dpi=image.info.get("dpi", (72, 72)))  # printed at its size
            jpeg = base64.b64encode(buf.getvalue()).decode()
            if len(jpeg) < len(png):  # line plots stay PNG: smaller and sharper so
                del out.data["image/png"]
                out.data["image/jpeg"] = jpeg
    return nb


def export(build):
    """build/report.html always, build/report.pdf when xelatex and pandoc are present (see the
    README). Returns the paths."""
    import jinja2
    from nbconvert import HTMLExporter, PDFExporter
    nb = assemble(build)
    paths = {}
    html_exporter = HTMLExporter(extra_loaders=[jinja2.DictLoader({"offline.html.j2": OFFLINE_HTML})],
                                 template_file="offline.html.j2", exclude_input=True, exclude_input_prompt=True,
                                 exclude_output_prompt=True)
    page, _ = html_exporter.from_notebook_node(offline_copy(nb))
    (build / "report.html").write_text(page)
    paths["html"] = build / "report.html"
    if shutil.which("xelatex") and shutil.which("pandoc"):
        pdf, _ = PDFExporter(extra_loaders=[jinja2.DictLoader({"labkit.tex.j2": PDF})], template_file="labkit.tex.j2",
                             exclude_input=True, exclude_input_prompt=True,
                             exclude_output_prompt=True).from_notebook_node(jpeg_copy(nb))
        (build / "report.pdf").write_bytes(pdf)
        paths["pdf"] = build / "report.pdf"
    else:
        print("[labkit] xelatex/pandoc not found: wrote HTML only (see README for the PDF)", file=sys.stderr)
    return paths
