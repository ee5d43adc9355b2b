"""Running an experiment: one batch of rows.

batch.py is the matrix (run_experiment: every target x shape x repetition);
servers.py starts a stack, peer or ceiling on its CPUs and stops its whole
tree; verify.py checks a server answers correctly before it is measured;
measure.py runs wrk or h2load once while sampling the server's process tree
(run_wrk, run_h2load); rows.py holds the columns every row shares
(base_row) and machine.py what a row says about the machine.
"""
from .batch import run_experiment  # noqa: F401
