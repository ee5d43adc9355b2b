"""Notebooks execute (quick mode) against the package and are committed without outputs.

Notebooks that belong to a component are executed by that component's tests
(bench: 04, 05; compliance: 07; ...); this file runs the rest.
"""
import os

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = ["00_tour.ipynb", "01_parser_lab.ipynb"]


def test_every_notebook_is_committed_without_outputs():
    for name in sorted(os.listdir(os.path.join(ROOT, "notebooks"))):
        if name.endswith(".ipynb"):
            nb = nbformat.read(os.path.join(ROOT, "notebooks", name), as_version=4)
            assert all(not c.get("outputs") and not c.get("execution_count")
                       for c in nb.cells if c.cell_type == "code"), f"{name}: commit notebooks without outputs"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", HERE)
def test_notebook_executes(name, monkeypatch):
    nb = nbformat.read(os.path.join(ROOT, "notebooks", name), as_version=4)
    monkeypatch.setenv("KOURIER_LAB_QUICK", "1")
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": ROOT}}).execute()
