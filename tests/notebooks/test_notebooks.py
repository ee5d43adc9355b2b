"""Notebooks execute (quick mode) against the package and are committed without outputs.

Notebooks that belong to a component are executed by that component's tests
(bench: 04, 05; compliance: 07; ...); this file runs the rest.
"""
import os

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = ["00_tour.ipynb", "01_parser_lab.ipynb"]


def test_every_notebook_is_committed_without_outputs():
    for name in sorted(os.listdir(os.path.join(ROOT, "notebooks"))):
        if name.endswith(".ipynb"):
            nb = nbformat.read(os.path.join(ROOT, "notebooks", name), as_version=4)
            assert all(not c.get("outputs") and not c.get("execution_count")
                       for c in nb.cells if c.cell_type == "code"), f"{name}: commit notebooks without outputs"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", HERE)
def test_notebook_executes(name, monkeypatch, tmp_path):
    nb = nbformat.read(os.path.join(ROOT, "notebooks", name), as_version=4)
    monkeypatch.setenv("KOURIER_LAB_QUICK", "1")
    monkeypatch.setenv("KOURIER_LAB_RESULTS", str(tmp_path / "results"))   # 00's lab panel run: not into data/
    monkeypatch.setenv("KOURIER_LAB_FIGURES", str(tmp_path / "figures"))
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": ROOT}}).execute()


# Notebooks whose conclusions are computed (bench/results/findings.py): they print what
# quick mode changed, end with "what to read" bullets, and keep logic in the package.
COMPUTED = ["01_parser_lab.ipynb", "02_numba_and_buffers.ipynb", "03_event_loops.ipynb",
            "04_server_matrix.ipynb", "05_reproduce_kourier_blog.ipynb", "06_memory.ipynb",
            "07_compliance.ipynb"]


@pytest.mark.parametrize("name", COMPUTED)
def test_notebook_is_thin_and_says_what_quick_mode_changed(name):
    nb = nbformat.read(os.path.join(ROOT, "notebooks", name), as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert any("findings.quick_mode_note(" in s for s in code), f"{name}: prints no quick-mode note"
    last = nb.cells[-1]
    assert last.cell_type == "markdown" and last.source.startswith("## What to read from this"), name
    assert last.source.count("\n* ") >= 3, f"{name}: fewer than three 'what to read' bullets"
    for s in code:
        # plotting and helpers live in the package (bench/notebooks/notebook_figures.py, bench/notebooks/parser_lab.py, ...)
        assert "import matplotlib" not in s and "plt." not in s, f"{name}: inline plotting"
        assert not any(line.startswith(("def ", "class ")) for line in s.splitlines()), \
            f"{name}: defines a function inline"
