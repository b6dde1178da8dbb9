import json
import os
import re
import shutil

import pytest
from PIL import Image

from labkit import data as D
from labkit.models import MODELS
from labkit.options import evaluation
from labkit.report import ROOT, build_report, jpeg_copy

from conftest import assert_results_consistent, figures as report_figures, pdf_text, shared_data


def test_the_pdf_gets_photographs_as_jpeg_and_line_plots_as_png():
    import base64
    import io

    import nbformat
    import numpy as np

    def png(array):
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, "PNG")
        return base64.b64encode(buf.getvalue()).decode()

    faces = D.synthetic_images(64).reshape(8, 8, 64, 64, 3).transpose(0, 2, 1, 3, 4).reshape(512, 512, 3)
    faces = np.clip(faces + np.random.default_rng(0).integers(-20, 20, faces.shape), 0, 255).astype(np.uint8)
    plot = np.full((300, 400, 3), 255, np.uint8)
    plot[150, 20:380] = (200, 0, 0)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[
        nbformat.v4.new_output("display_data", data={"image/png": png(faces)}),
        nbformat.v4.new_output("display_data", data={"image/png": png(plot)})])])
    photo, line = jpeg_copy(nb).cells[0].outputs
    assert set(photo.data) == {"image/jpeg"} and set(line.data) == {"image/png"}
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(photo.data["image/jpeg"]))), dtype=float)
    assert np.abs(decoded - faces).mean() < 15  # the same picture (another one differs by ~75), less its noise
    assert set(nb.cells[0].outputs[0].data) == {"image/png"}  # the executed notebook is left as it was


@pytest.mark.slow
def test_smoke_report_end_to_end(tmp_path):
    committed = {p: p.stat().st_mtime for p in (ROOT / "figures").rglob("*")}
    data = shared_data()
    paths = build_report("smoke", tmp_path, data=str(data) if data else None, epochs=1, limit=256, eval_n=16, n_ref=16)

    for name in ("00_introduction", "01_data", *(f"02_train_{m}" for m in MODELS), "03_results", "04_discussion",
                 "05_demo"):
        nb = json.loads((tmp_path / f"{name}.ipynb").read_text())
        errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
        assert not errors, name
    intro = (tmp_path / "00_introduction.ipynb").read_text()
    # One settings table, a column per model, each with its own beta (the GAN has none).
    assert intro.count("| `beta` |") == 1
    assert "| setting | handout | VAE (hw2) | VAE-Dis_l | VAE-GAN | GAN (hw3) |" in intro
    demo = (tmp_path / "05_demo.ipynb").read_text()
    assert "The sliders' directions as strips" in demo

    figures = tmp_path / "figures"
    expected = report_figures() | ({"attributes.png"} if data else set())
    assert expected <= {p.name for p in figures.glob("*.png")}
    for name in expected:
        with Image.open(figures / name) as img:
            img.verify()
        with Image.open(figures / name) as img:
            assert img.width >= 300 and img.height >= 150, name
    assert {p: p.stat().st_mtime for p in (ROOT / "figures").rglob("*")} == committed

    results = tmp_path / "03_results.ipynb"
    if os.environ.get("LABKIT_INCEPTION"):  # offline, FID needs local weights; CI has them
        metrics = json.loads((tmp_path / "figures" / "metrics.json").read_text())
        assert set(metrics["runs"]) == set(MODELS)
        assert "| FID prior samples |" in results.read_text()
    else:
        # With internet torch-fidelity downloads the weights; without, the notebook says so.
        assert "| FID prior samples |" in results.read_text() or "FID/KID not computed" in results.read_text()

    html = paths["html"].read_text()
    assert paths["html"].stat().st_size > 100_000  # figures are embedded
    assert not re.search(r"<script[^>]+src=.http", html)  # an offline reader loses nothing
    assert re.search(r'<img[^>]*class="math"', html)  # math is drawn, not left to MathJax
    # What a reader sees: the page without its stylesheets (JupyterLab's CSS names .lm-Widget), scripts and tags.
    texts = [re.sub(r"<[^>]+>", " ", re.sub(r"<(style|script)\b.*?</\1>", " ", html, flags=re.S))]
    if shutil.which("xelatex") and shutil.which("pandoc"):
        text = pdf_text(paths["pdf"])
        texts.append(text)
        for title in ("Introduction", "Experiment setups", "How the VAE-GAN is implemented",
                      "Which generator loss was used", "Results", "Discussion", "Demo"):
            assert title in text, title
        assert "non-saturating" in text
        if os.environ.get("LABKIT_INCEPTION"):  # the check committed results must pass, on this smoke report
            assert_results_consistent(tmp_path / "figures", paths["pdf"], evaluation("smoke", eval_n=16, n_ref=16),
                                      dict(profile="smoke", epochs=1, limit=256))
    for text in texts:
        assert "A smoke check, not results" in text  # the first page says what this is
        assert "Figure 1." in text and "Figure 9." in text  # numbered captions
        for residue in ("[labkit]", "it/s", "step/s", "Executing", "Kernel is running", "Widget", "Warning"):
            assert residue not in text, residue
