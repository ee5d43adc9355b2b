"""The lab panel and its widget-free API: a real short run, the registry's
combinations only, and Stop / kernel interrupt / Ctrl-C leaving no process."""
import os
import shutil
import signal
import threading
import time

import pandas as pd
import pytest

from kourier_lab import lab, procs
from kourier_lab.sampler import descendants

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")


@pytest.fixture
def results(tmp_path, monkeypatch):
    out = tmp_path / "results"
    monkeypatch.setenv("KOURIER_LAB_RESULTS", str(out))
    return out


# processes of this test process that a test did not start (servers other tests
# share, kept for the session) are not the test's: _children() leaves them out
_BEFORE = set()


def _children() -> set:
    return {p for p in descendants(os.getpid()) if p != os.getpid()} - _BEFORE


@pytest.fixture(autouse=True)
def _others_children():
    _BEFORE.clear()
    _BEFORE.update(p for p in descendants(os.getpid()) if p != os.getpid())
    yield
    _BEFORE.clear()


def _alive(pids) -> list:
    left = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    left.append(pid)
        except OSError:
            pass
    return left


def _wait_for_children(seen: set, n: int, timeout: float = 90, done=lambda: False) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done():
        now = _children()
        seen |= now
        if len(now) >= n:
            return
        time.sleep(0.05)
    pytest.fail(f"no run under way (children seen: {seen})")


def test_run_returns_rows_of_the_ceiling_and_the_stack(results):
    df = lab.run("c", "c", "c", shape="keepalive", duration=1, repetitions=1, connections=8, quick=True)
    assert set(df["server"]) == {"ceiling", "c/c/c"}
    assert (df["status"] == "ok").all(), df[["server", "status", "note"]]
    assert (df["req_per_s"] > 0).all() and (df["head_memo"] == False).all()  # noqa: E712
    assert set(df["connections"]) == {8} and set(df["pipeline"]) == {1}
    assert lab.stored_batches(results) == [df.attrs["batch_id"]]
    fig = lab.plot_beside(df, lab.stored_rows(results=results))
    fig.savefig(os.devnull, format="png")
    assert "batch " + df.attrs["batch_id"] in fig.get_suptitle()


def test_only_the_registry_s_combinations():
    allowed = lab.stacks()
    assert "c/c/c" in allowed and "python/python/python" in allowed
    with pytest.raises(ValueError, match="not a stack this machine can run"):
        lab.experiment("numba", "python", "python") if "numba/python/python" not in allowed else \
            lab.experiment("nosuch", "c", "c")
    panel = lab.LabPanel()
    panel.loop.value = "numba"
    combos = {(panel.loop.value, p) for p in panel.parser.options}
    assert all(f"numba/{p}/{b}" in allowed for _, p in combos for b in panel.buffer.options)
    panel.loop.value = "c"
    panel.parser.value = "c"
    assert list(panel.buffer.options) == sorted({s.split("/")[2] for s in allowed if s.startswith("c/c/")})


@pytest.mark.parametrize("how", ["Stop button", "kernel interrupt"])
def test_panel_stop_and_kernel_interrupt_leave_no_process(results, how):
    previous = signal.getsignal(signal.SIGINT)
    try:
        panel = lab.LabPanel(duration=30, repetitions=1)
        panel.shape.value = "keepalive"
        panel.connections.value = 8
        seen = set()
        panel.start()
        _wait_for_children(seen, 2, done=lambda: not panel.running)      # a server and wrk
        if how == "Stop button":
            panel.stop_button.click()
        else:
            os.kill(os.getpid(), signal.SIGINT)      # what Jupyter's interrupt sends the kernel
        panel.wait(60)
        assert not panel.running
        assert panel.error is None, panel.error
        assert panel.status.value.startswith("stopped"), panel.status.value
        assert _alive(seen) == [], f"left running: {_alive(seen)}"
        assert not panel.run_button.disabled and panel.stop_button.disabled
        assert panel.plot.value                                # the figure was drawn
    finally:
        signal.signal(signal.SIGINT, previous)


def test_run_interrupted_in_the_main_thread_stops_its_processes(results):
    seen = set()
    stop = threading.Event()

    def interrupt_when_running():
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not stop.is_set():
            now = _children()
            seen.update(now)
            if len(now) >= 2:
                time.sleep(0.3)
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    t = threading.Thread(target=interrupt_when_running, daemon=True)
    t.start()
    with pytest.raises(KeyboardInterrupt):
        lab.run("python", "python", "python", shape="keepalive", duration=30, repetitions=1,
                connections=8, quick=False)
    stop.set()
    t.join(5)
    assert seen and _alive(seen) == [], f"left running: {_alive(seen)}"
    assert procs.registered() == []


def test_panel_offers_the_corpus_shapes_and_folding():
    assert list(lab.SHAPES)[:3] == ["distinct", "real", "api"]
    exp = lab.experiment("python", "python", "python", shape="distinct", fold_runs=True)
    shape = exp.shapes[0]
    assert (shape.name, shape.corpus, shape.connections, shape.pipeline) == ("distinct", "distinct", 64, 16)
    assert exp.fold_runs == (True,) and exp.head_memo == (False,)
    api = lab.experiment("python", "python", "python", shape="api").shapes[0]
    assert (api.app, api.corpus) == ("demo", "api")
    assert "fold_runs" in lab.table(pd.DataFrame([{"server": "c/c/c+fold", "fold_runs": True}])).columns
