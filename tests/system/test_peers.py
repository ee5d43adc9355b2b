"""Each peer whose toolchain is present is built, started pinned with 2 workers,
probed on several paths and stopped; the others are skipped with the reason."""
import os
import signal
import socket
import time

import pytest

from kourier_lab import peers
from kourier_lab.compliance import client
from kourier_lab.peers.cli import parse_cpus


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_pids(pgid):
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:        # fields after ')' : state ppid pgrp ...
            pids.append(int(entry))
    return pids


def _allowed_cpus(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    return None


def _thread_names(pid):
    names = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            names.append(open(f"/proc/{pid}/task/{tid}/comm").read().strip())
        except OSError:
            pass
    return names


def test_names_and_unknown_peer():
    assert peers.names() == ["go", "hyper", "nginx", "uvicorn", "granian", "asyncio-httptools"]
    with pytest.raises(ValueError):
        peers.available("apache")
    for n in peers.names():
        ok, why = peers.available(n)
        assert isinstance(ok, bool) and (ok or why)


def test_parse_cpus():
    assert parse_cpus("0") == [0]
    assert parse_cpus("3,0-1") == [0, 1, 3]
    for bad in ("", "a", "1-", "-1"):
        with pytest.raises(ValueError):
            parse_cpus(bad)


def test_bad_workers_is_refused():
    with pytest.raises(ValueError):
        peers.start("nginx", "127.0.0.1", _free_port(), workers=0)


WORKERS = 2


@pytest.mark.parametrize("name", peers.names())
def test_peer_builds_serves_and_stops(name):
    ok, why = peers.available(name)
    if not ok:
        pytest.skip(f"{name}: {why}")
    t0 = time.perf_counter()
    peers.build(name)
    build_s = time.perf_counter() - t0
    port = _free_port()
    proc = peers.start(name, "127.0.0.1", port, workers=WORKERS, cpus=[0])
    try:
        for path in (b"/", b"/hello", b"/any/deep/path?q=1"):
            reply = client.probe("127.0.0.1", port, path=path)
            assert reply.status == 200, (path, reply)
            head, _, body = reply.head.partition(b"\r\n\r\n")
            assert body == b"Hello World!"
            assert b"content-type: text/plain" in head.lower()
        pids = _group_pids(proc.pid)
        assert pids and all(_allowed_cpus(p) == "0" for p in pids), [(p, _allowed_cpus(p)) for p in pids]
        # worker count honoured
        if name == "nginx":
            assert len(pids) == WORKERS + 1                      # master + workers
        elif name in ("uvicorn", "granian"):
            assert len(pids) >= WORKERS + 1                      # supervisor + worker processes
        elif name == "asyncio-httptools":
            assert len(pids) == WORKERS
        elif name == "hyper":
            workers = [t for t in _thread_names(proc.pid) if t.startswith("tokio-runtime-w")]
            assert len(workers) == WORKERS
        elif name == "go":
            assert f"GOMAXPROCS={WORKERS}" in proc.log_path.read_text()
    finally:
        peers.stop(proc)
    assert proc.returncode is not None
    assert _group_pids(proc.pid) == []
    print(f"{name}: build/check {build_s:.1f} s")


def test_stop_kills_a_group_that_ignores_sigterm(tmp_path):
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-c",
                             "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"],
                            start_new_session=True)
    time.sleep(0.3)
    peers.stop(proc, timeout=1)
    assert proc.returncode == -signal.SIGKILL
