"""notebooks/09_your_variant.ipynb executes in quick mode (a user's parsers from a
fresh directory: graded, measured in process and in the server)."""
import os

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.timeout(900)
def test_your_variant_notebook_executes(monkeypatch, tmp_path):
    nb = nbformat.read(os.path.join(ROOT, "notebooks", "09_your_variant.ipynb"), as_version=4)
    monkeypatch.setenv("KOURIER_LAB_QUICK", "1")
    monkeypatch.setenv("KOURIER_LAB_CACHE", str(tmp_path / "cache"))
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": ROOT}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    # the naive parser fails the strictness clauses, the corrected one passes them all
    assert "naive_parser.py:Naive: " in text and "FAIL [contract] " in text
    strict_line = next(ln for ln in text.splitlines() if "strict_parser.py:Strict: " in ln)
    passed, total = strict_line.split(": ")[1].split(" ")[0].split("/")
    assert passed == total, strict_line
    # every stack answered in the server benchmark, the user's parsers included
    assert "no figures to compare" not in text
