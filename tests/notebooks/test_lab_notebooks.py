"""notebooks/10_lab_panel.ipynb executes in quick mode, its runs kept out of data/."""
import os
import shutil

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
@pytest.mark.timeout(600)
def test_lab_panel_notebook_executes(monkeypatch, tmp_path):
    monkeypatch.setenv("KOURIER_LAB_QUICK", "1")
    monkeypatch.setenv("KOURIER_LAB_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("KOURIER_LAB_FIGURES", str(tmp_path / "figures"))
    nb = nbformat.read(os.path.join(ROOT, "notebooks", "10_lab_panel.ipynb"), as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": ROOT}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widgets, "the panel was not displayed as a widget"
    text = "".join(o.get("text", "") for o in outputs)
    assert "done: batch" in text                             # the panel's run finished
    batches = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert len(batches) == 2 and all(b.endswith("-lab") for b in batches)
    last = nb.cells[-1]
    assert last.cell_type == "markdown" and last.source.startswith("## What to read from this")
