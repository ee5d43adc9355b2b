"""notebooks/07_compliance.ipynb executes (quick mode) against the package."""
import os

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_compliance_notebook_executes(monkeypatch):
    path = os.path.join(ROOT, "notebooks", "07_compliance.ipynb")
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit notebooks without outputs"
    monkeypatch.setenv("KOURIER_LAB_QUICK", "1")
    monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": ROOT}}).execute()
    survey_cell = next(c for c in nb.cells if c.cell_type == "code" and "run_survey" in c.source)
    assert survey_cell.outputs, "the survey cell produced no table"
    log = "".join(o.get("text", "") for o in survey_cell.outputs if o.get("output_type") == "stream")
    # targets may be unavailable on this machine (said so), but none may break
    assert "failed (" not in log and "did not start" not in log, log
    assert " published: " in log and " strict: " in log
