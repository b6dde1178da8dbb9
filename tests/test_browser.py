"""The demo as a JupyterLab user meets it: 05_demo.ipynb opened in a real browser, every cell
run from the menu, and the sliders dragged with the mouse (conftest.IN_A_BROWSER says what it
needs)."""
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from labkit.report import NOTEBOOKS
from labkit.train import training_loop

from conftest import CHROMIUM, FLAGS, IN_A_BROWSER, TINY, drag, free_port, serve, shows_a_change

pytestmark = IN_A_BROWSER


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on loopback over a folder holding the demo notebook and a trained VAE-GAN."""
    root = tmp_path_factory.mktemp("lab")
    (root / "notebooks").mkdir()
    shutil.copy(NOTEBOOKS / "05_demo.ipynb", root / "notebooks")
    training_loop(root / "build" / "runs" / "vaegan", model="vaegan", profile="smoke", epochs=3, batch=16, limit=256,
                  progress=False, **TINY)
    config = root / "jupyter"
    (config / "labconfig").mkdir(parents=True)
    (config / "labconfig" / "page_config.json").write_text(json.dumps(  # no news pop-up over the notebook
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    port, token = free_port(), "labkit-test-token"
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(config), JUPYTER_DATA_DIR=str(root / "data"),
               JUPYTER_RUNTIME_DIR=str(root / "runtime"), OMP_NUM_THREADS="1")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.check_for_updates_class="
         "jupyterlab.NeverCheckForUpdate", *(["--allow-root"] if os.geteuid() == 0 else [])],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    yield from serve(server, lambda: urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2),
                     "JupyterLab", (url, token))


def test_dragging_the_sliders_changes_the_face(lab, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout, sync_playwright
    url, token = lab
    shots = Path(os.environ.get("LABKIT_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/lab/tree/notebooks/05_demo.ipynb?token={token}")
        page.locator(".jp-Notebook").first.wait_for(timeout=300_000)
        # The toolbar's indicator reads idle before the kernel is connected, and JupyterLab drops a Run All
        # sent then: wait for the status bar, and run again if the first cell still has no execution count.
        page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\| Idle\s*$")).wait_for(timeout=300_000)
        first_prompt = page.locator(".jp-CodeCell .jp-InputPrompt").first
        for _ in range(3):
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            try:
                page.wait_for_function("el => /\\[[*0-9]/.test(el.textContent)", arg=first_prompt.element_handle(),
                                       timeout=60_000)
                break
            except PlaywrightTimeout:
                page.screenshot(path=shots / "demo-0-not-run.png")
        face = page.locator(".jp-OutputArea-output img.widget-image").first
        face.wait_for(timeout=300_000)
        # The last cell ran: its caption in an output (the editor may show the same words in the cell's source).
        page.locator(".jp-OutputArea-output").get_by_text("The sliders' directions as strips").wait_for(timeout=300_000)
        face.scroll_into_view_if_needed()
        page.screenshot(path=shots / "demo-1-ran.png")

        assert shows_a_change(page, face, lambda: drag(page, "PC1", 60), shots / "demo-2-pc1.png"), "PC1"
        start = page.locator(".widget-dropdown", has_text="start").locator("select").first
        assert shows_a_change(page, face, lambda: start.select_option(label="sample 3"), shots / "demo-3-start.png")
        assert shows_a_change(page, face, lambda: drag(page, "A → B", 40), shots / "demo-4-blend.png"), "A → B"
        browser.close()
