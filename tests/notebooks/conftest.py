"""One way to execute a notebook in the tests: as committed (no outputs), in quick
mode, with results and figures in the test's temporary directory, never in data/."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


@pytest.fixture
def run_notebook(tmp_path, monkeypatch):
    """run_notebook(name, timeout=600, cwd=NOTEBOOKS, **env) -> the executed notebook.

    The kernel starts in cwd (notebooks/, as Jupyter starts it, unless a test
    needs the checkout's root) with the checkout importable even when the
    package is not pip-installed; extra environment variables go in **env."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")

    def run(name, timeout=600, cwd=NOTEBOOKS, **env):
        monkeypatch.setenv("KOURIER_LAB_QUICK", "1")
        monkeypatch.setenv("KOURIER_LAB_RESULTS", str(tmp_path / "results"))
        monkeypatch.setenv("KOURIER_LAB_FIGURES", str(tmp_path / "figures"))
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        for key, value in env.items():
            monkeypatch.setenv(key, str(value))
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        assert all(not c.get("outputs") and not c.get("execution_count")
                   for c in nb.cells if c.cell_type == "code"), f"{name}: commit notebooks without outputs"
        nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(cwd)}}).execute()
        return nb

    return run

