"""`make demo` as a new user meets it on a fresh clone: no CelebA, no training. Voila serves the
demo notebook as a page on the published weights; Chromium (driven by Playwright) loads it, drags a
slider and picks another start, and each time the face changes (conftest.IN_A_BROWSER says what
it needs)."""
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from labkit import pretrained
from labkit.report import NOTEBOOKS

from conftest import CHROMIUM, FLAGS, IN_A_BROWSER, drag, free_port, serve, shows_a_change

pytestmark = [*IN_A_BROWSER, pytest.mark.skipif(not (pretrained.PUBLISHED / "vaegan.safetensors").is_file(),
                                                reason="no published VAE-GAN")]


@pytest.fixture(scope="module")
def demo_page(tmp_path_factory):
    """The demo notebook served by Voila from a folder without trained runs or CelebA, as on a fresh
    clone; yields its URL."""
    root = tmp_path_factory.mktemp("clone")
    (root / "notebooks").mkdir()
    shutil.copy(NOTEBOOKS / "05_demo.ipynb", root / "notebooks")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "LABKIT_DATA"}
    env.update(JUPYTER_CONFIG_DIR=str(root / "config"), JUPYTER_DATA_DIR=str(root / "data"),
               JUPYTER_RUNTIME_DIR=str(root / "runtime"), OMP_NUM_THREADS="1")
    server = subprocess.Popen([sys.executable, "-m", "voila", str(root / "notebooks" / "05_demo.ipynb"), "--no-browser",
                               f"--port={port}", "--Voila.ip=127.0.0.1"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, start_new_session=True)
    # listening is enough: a GET of the page itself would run the notebook once more
    yield from serve(server, lambda: socket.create_connection(("127.0.0.1", port), timeout=2).close(), "Voila",
                     f"http://127.0.0.1:{port}/")


def test_the_demo_page_shows_trained_faces_and_the_sliders_move_them(demo_page, tmp_path):
    from playwright.sync_api import sync_playwright
    shots = Path(os.environ.get("LABKIT_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(demo_page)
        face = page.locator("img.widget-image").first
        face.wait_for(timeout=180_000)
        page.get_by_text("The VAE-GAN of the published weights").wait_for(timeout=60_000)  # not a trained run
        page.screenshot(path=shots / "voila-1-first-face.png")
        box = face.bounding_box()
        assert abs(box["width"] - box["height"]) < 2, f"the face is drawn {box['width']}x{box['height']}, not square"
        assert shows_a_change(page, face, lambda: drag(page, "PC1", 60), shots / "voila-2-pc1.png")
        start = page.locator(".widget-dropdown", has_text="start").locator("select").first
        assert shows_a_change(page, face, lambda: start.select_option(label="sample 3"), shots / "voila-3-start.png")
        assert shows_a_change(page, face, lambda: drag(page, "Smiling", -40), shots / "voila-4-smiling.png")
        browser.close()
