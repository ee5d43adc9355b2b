"""Ctrl-C (SIGINT to the whole process group, as a terminal sends it) and SIGTERM
stop the long commands mid-run: finished rows kept, a summary printed, exit
130 / 143, and no process the command started left behind.

Processes are found by parentage and session, never by name: every descendant
of the command is recorded while it runs, with the sessions and process groups
they lead, and after the exit none of them may be alive."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from kourier_lab import procs
from kourier_lab.sampler import descendants

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")

ROOT = Path(__file__).resolve().parents[2]


def _stat(pid: int):
    """(ppid, pgrp, session, state) from /proc/<pid>/stat, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(rest[1]), int(rest[2]), int(rest[3]), rest[0]


def _live_in(groups: set, pids: set) -> list:
    """Processes (not zombies) that are one of `pids` or in one of the sessions /
    process groups `groups`."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        st = _stat(pid)
        if st is None or st[3] == "Z":
            continue
        if pid in pids or st[1] in groups or st[2] in groups:
            out.append(pid)
    return out


class Watched:
    """A command started in a session of its own (so a signal to its group is
    what a terminal's Ctrl-C is), with every descendant recorded as it runs."""

    def __init__(self, *args, env=None):
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   **(env or {}))
        self.proc = subprocess.Popen([sys.executable, "-m", "kourier_lab.cli", *args], cwd=str(ROOT),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                     start_new_session=True)
        self.pids, self.groups = set(), set()

    def record(self) -> int:
        tree = [p for p in descendants(self.proc.pid) if p != self.proc.pid]
        for pid in tree:
            st = _stat(pid)
            if st is not None:
                self.pids.add(pid)
                if st[1] != self.proc.pid:
                    self.groups.add(st[1])
                if st[2] != self.proc.pid:
                    self.groups.add(st[2])
        return len(tree)

    def wait_until(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.record()
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                pytest.fail(f"the command ended before {what}: rc {self.proc.returncode}\n{out}\n{err}")
            if condition():
                return
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"timed out waiting for {what}")

    def finish(self, timeout: float = 60):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("the command did not stop after the signal")
        return self.proc.returncode, out, err

    def leftovers(self) -> list:
        deadline = time.monotonic() + 5      # a stopped process may take a moment to be reaped
        while True:
            left = _live_in(self.groups, self.pids)
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.1)

    def kill(self):
        for pid in _live_in(self.groups, self.pids | {self.proc.pid}):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.proc.kill()
        self.proc.communicate()


def _experiment(tmp_path) -> Path:
    spec = tmp_path / "stop.toml"
    # wrk: the test watches for its raw outputs (wrk/<server>-<shape>-run<N>.txt)
    spec.write_text('name = "stop_test"\nrepetitions = 3\nduration = 1\nwarmup = 0\npause = 0\n'
                    'load_tool = "wrk"\n'
                    'stacks = ["python/python/python"]\nshapes = ["keepalive"]\n'
                    '[shape.keepalive]\nconnections = 4\n')
    return spec


@pytest.mark.parametrize("how", ["SIGINT to the process group", "SIGTERM"])
def test_bench_stops_mid_run_keeps_rows_and_leaves_no_process(tmp_path, how):
    out = tmp_path / "results"
    cmd = Watched("bench", str(_experiment(tmp_path)), "--out", str(out), "--no-figures", "--no-progress")
    if how == "SIGTERM":
        # after the ceiling's first run finished (its second run's output exists)
        cmd.wait_until(lambda: list(out.glob("*/wrk/ceiling-keepalive-run2.txt")) and cmd.record() >= 2,
                       120, "the ceiling's second run")
        cmd.proc.send_signal(signal.SIGTERM)
        want_rc, want_ok = 143, 1
    else:
        # while the stack's first wrk run is under way: the ceiling's rows are written
        cmd.wait_until(lambda: list(out.glob("*/wrk/python_python_python-keepalive-run1.txt"))
                       and cmd.record() >= 2, 180, "the stack's first run")
        os.killpg(cmd.proc.pid, signal.SIGINT)
        want_rc, want_ok = 130, 3
    rc, stdout, stderr = cmd.finish()
    assert rc == want_rc, (stdout, stderr)
    assert "interrupted" in stdout and "rows so far are kept" in stdout, stdout
    assert "interrupted by SIG" in stderr, stderr
    assert cmd.leftovers() == [], f"left running: {cmd.leftovers()}"
    assert cmd.pids, "no child process was seen: the test did not interrupt a run"
    rows = pd.read_parquet(next(out.glob("*/rows.parquet")))
    ok = rows[rows["status"] == "ok"]
    assert (ok["server"] == "ceiling").sum() == want_ok, rows[["server", "run", "status"]]
    assert "python/python/python" not in set(ok["server"])      # cut mid-run: not a row
    assert "ceiling" in stdout                                   # the summary of what ran


def test_soak_stops_on_sigint_and_leaves_no_process(tmp_path):
    out = tmp_path / "results"
    cmd = Watched("soak", "--stacks", "python/python/python", "--duration", "60", "--out", str(out),
                  "--no-figures")
    cmd.wait_until(lambda: cmd.record() >= 4, 120, "the soak's server and load")   # server + 3 wrk
    time.sleep(0.5)
    cmd.record()
    os.killpg(cmd.proc.pid, signal.SIGINT)
    rc, stdout, stderr = cmd.finish()
    assert rc == 130, (stdout, stderr)
    assert "interrupted" in stdout, stdout
    assert cmd.leftovers() == [], f"left running: {cmd.leftovers()}"


def test_stop_all_ends_registered_groups_and_their_children():
    # a session leader with a child that ignores SIGTERM: both must end
    p = subprocess.Popen([sys.executable, "-c", "import signal, subprocess, sys, time\n"
                          "subprocess.Popen([sys.executable, '-c', 'import signal, time\\n"
                          "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\ntime.sleep(60)'])\n"
                          "time.sleep(60)"], start_new_session=True)
    procs.register(p, "sleeper")
    deadline = time.monotonic() + 10
    while len(descendants(p.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    tree = set(descendants(p.pid))
    assert len(tree) == 2
    assert procs.stop_all(grace=0.5) == ["sleeper"]
    assert _live_in({p.pid}, tree) == []
    assert procs.registered() == []


def test_interruptible_raises_once_with_the_exit_status():
    with procs.interruptible() as fired:
        with pytest.raises(procs.Interrupted) as e:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        assert e.value.exit_status == 143 and fired == [signal.SIGTERM]
        os.kill(os.getpid(), signal.SIGINT)          # a second signal while stopping: no raise
        time.sleep(0.05)
