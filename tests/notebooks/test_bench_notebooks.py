"""The bench notebooks execute end to end in quick mode (real wrk runs, 1 s each).

Results and figures go to a temporary directory (KOURIER_LAB_RESULTS /
KOURIER_LAB_FIGURES), never into data/.
"""
import os
import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", ["04_server_matrix.ipynb", "05_reproduce_kourier_blog.ipynb"])
def test_notebook_executes_in_quick_mode(name, tmp_path, monkeypatch):
    monkeypatch.setenv("KOURIER_LAB_QUICK", "1")
    monkeypatch.setenv("KOURIER_LAB_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("KOURIER_LAB_FIGURES", str(tmp_path / "figures"))
    # The kernel runs in notebooks/ (as Jupyter would): make the checkout importable
    # even when the package is not pip-installed.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT),
                                                                   os.environ.get("PYTHONPATH")])))
    path = NOTEBOOKS / name
    nb = nbformat.read(path, as_version=4)
    # Committed without outputs: what runs is what a reader gets.
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), name
    client = nbclient.NotebookClient(nb, timeout=540, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    rows = list((tmp_path / "results").glob("*/rows.parquet"))
    assert len(rows) == 1, rows
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images, "the notebook showed no figure"
