"""notebooks/00_tour.ipynb opened as a person opens it: JupyterLab from this
environment on a free port, headless Chromium (Debian's `chromium`, driven by
Playwright through executable_path), Run All, then: no error output, the lab
panel's widget rendered, a screenshot kept in the test's temporary directory.

The notebook is run from a copy in the temporary directory, so JupyterLab's
autosave never writes outputs into notebooks/."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser")) if p), None)

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                       "(apt-get install chromium; the Makefile's APT_PACKAGES has it)"),
    pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (the panel's run needs it)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _jupyter() -> list:
    """JupyterLab from this environment (the venv's jupyter, else -m jupyterlab)."""
    exe = Path(sys.executable).with_name("jupyter")
    return [str(exe), "lab"] if exe.exists() else [sys.executable, "-m", "jupyterlab"]


@pytest.fixture
def jupyterlab(tmp_path):
    pytest.importorskip("jupyterlab", reason="jupyterlab is a dependency: pip install -e .")
    work = tmp_path / "notebooks"
    work.mkdir()
    shutil.copy(ROOT / "notebooks" / "00_tour.ipynb", work / "00_tour.ipynb")
    port, token = _free_port(), "kourier-lab-browser-test"
    env = dict(os.environ, KOURIER_LAB_QUICK="1", KOURIER_LAB_RESULTS=str(tmp_path / "results"),
               KOURIER_LAB_FIGURES=str(tmp_path / "figures"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = _jupyter() + ["--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
                        f"--ServerApp.token={token}", f"--ServerApp.root_dir={work}",
                        "--LabApp.expose_app_in_browser=True", "--allow-root"]
    log = open(tmp_path / "jupyterlab.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.close()
                pytest.fail("JupyterLab did not start: " + (tmp_path / "jupyterlab.log").read_text()[-2000:])
            time.sleep(0.2)
    try:
        yield url, token, tmp_path
    finally:
        proc.send_signal(signal.SIGTERM)         # the server shuts its kernels down
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # a kernel it could not stop (own group: ours)
        except ProcessLookupError:
            pass
        log.close()


ERRORS_JS = """() => {
  const nb = window.jupyterapp.shell.currentWidget.content.model;
  const out = [];
  for (let i = 0; i < nb.cells.length; i++) {
    const cell = nb.cells.get(i);
    if (cell.type !== 'code') continue;
    const outputs = cell.toJSON().outputs || [];
    out.push({count: cell.toJSON().execution_count,
              errors: outputs.filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue)});
  }
  return out;
}"""


@pytest.mark.timeout(300)
def test_tour_notebook_runs_in_chromium_and_shows_the_panel(jupyterlab):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    url, token, tmp = jupyterlab
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.goto(f"{url}/lab/tree/00_tour.ipynb?token={token}", timeout=90_000)
            page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget && "
                                   "window.jupyterapp.shell.currentWidget.sessionContext && "
                                   "window.jupyterapp.shell.currentWidget.sessionContext.session && "
                                   "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel && "
                                   "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
                                   ".connectionStatus === 'connected'", timeout=90_000)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            deadline = time.monotonic() + 240
            cells = []
            while time.monotonic() < deadline:
                cells = page.evaluate(ERRORS_JS)
                if any(c["errors"] for c in cells) or all(c["count"] for c in cells):
                    break
                time.sleep(0.5)
            page.screenshot(path=str(tmp / "tour_full.png"), full_page=True)
            errors = [e for c in cells for e in c["errors"]]
            assert errors == [], errors
            assert cells and all(c["count"] for c in cells), f"cells left unexecuted: {cells}"
            panel = page.locator(".kourier-lab-panel").first
            panel.wait_for(state="visible", timeout=30_000)
            panel.scroll_into_view_if_needed()
            # the panel's run ended (its status line says so) and its plot is an image
            page.wait_for_function("() => [...document.querySelectorAll('.kourier-lab-panel')]"
                                   ".some(p => p.innerText.includes('done: batch'))", timeout=60_000)
            assert panel.locator("img").count() >= 1
            panel.screenshot(path=str(tmp / "lab_panel.png"))
        finally:
            browser.close()
    assert (tmp / "lab_panel.png").stat().st_size > 10_000
    shot_copy = os.environ.get("KOURIER_LAB_SCREENSHOT")      # where a developer wants a copy
    if shot_copy:
        shutil.copy(tmp / "lab_panel.png", shot_copy)
    json.dumps(cells)
