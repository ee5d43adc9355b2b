"""A Numba worker never compiles while it serves (server/warm_up.py).

Each stack that uses Numba starts on an EMPTY Numba cache of its own, so the
supervisor's warm-up compiles everything; then the server gets every spec
corpus request, every strict compliance case and the hostile inputs, and its
stderr must hold no "Numba compiled ... while serving" line (the warm-up's
compile watch writes one per compilation after ready).  Afterwards a fresh
interpreter on the now warm cache creates the Numba parser and parses with it
without a single compilation.  Counts of Numba's compile events, no timing.
"""
import json
import os
import socket
import subprocess
import sys

import pytest

from kourier_lab import loops, spec
from kourier_lab.server.process import HOST, ServerProcess, read_until_close
from kourier_lab.stress.hostile import INPUTS, MAX_HEADER_BYTES, send_hostile, server_args

STACKS = [s for s in ("numba/numba/numba", "c/numba/c") if tuple(s.split("/")) in loops.combinations()]
# a cold cache compiles every kernel: minutes on a loaded 2-core machine
pytestmark = [pytest.mark.server, pytest.mark.timeout(1500)]


def _send_and_close(port, data, timeout=5.0):
    """One connection: the bytes, a half-close, every byte of the answer."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass                    # the server answered and closed early
        try:
            return read_until_close(sock, timeout)[0]
        except OSError:
            return b""


@pytest.mark.parametrize("stack", STACKS)
def test_no_compilation_after_ready_on_an_empty_cache(stack, tmp_path):
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    env = {"NUMBA_CACHE_DIR": str(cache)}
    loop, parser, buffer = stack.split("/")
    srv = ServerProcess(*server_args(), loop=loop, parser=parser, buffer=buffer, env=env).start(timeout=1200)
    try:
        warm = [line for line in srv.stderr_lines if "numba warm-up" in line]
        assert warm, "no warm-up line at start-up:\n" + "".join(srv.stderr_lines)
        assert " 0 compiled" not in warm[0], f"the cache was not empty: {warm[0]}"
        host = f"{HOST}:{srv.port}".encode()
        for case in spec.load_request_cases():
            _send_and_close(srv.port, case.request)
        for case in spec.load_strict_cases():
            _send_and_close(srv.port, case.data.replace(b"{H}", host)
                            + (case.followup or b"").replace(b"{H}", host))
        statuses = {}
        for item in INPUTS:
            if item.needs_header_bytes > MAX_HEADER_BYTES:
                continue
            row = send_hostile(srv.port, item, quick=True, timeout=30)
            statuses[item.name] = row["answer_status"]
        wrong = {k: v for k, v in statuses.items() if v not in next(i for i in INPUTS if i.name == k).expect}
        assert not wrong, f"hostile inputs answered with the wrong status: {wrong}"
    finally:
        assert srv.stop() == 0
    late = [line for line in srv.stderr_lines if "while serving" in line]
    assert not late, "Numba compiled after ready:\n" + "".join(late)

    # a fresh interpreter on the warm cache: parsers.create("numba") loads, never compiles
    probe = r"""
import json
from numba.core import event
from kourier_lab import parsers
compiled = []
class L(event.Listener):
    def on_start(self, ev): pass
    def on_end(self, ev): compiled.append(ev.data["dispatcher"].py_func.__qualname__)
event.register("numba:compile", L())
p = parsers.create("numba")
for kind in (bytes, bytearray):
    raw = kind(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
    assert p.parse_head(raw, 0) > 0
    p.head()
    p.parse_batch(raw, 0)
    p.parse_chunked(kind(b"3\r\nabc\r\n0\r\n\r\n"), 0)
print(json.dumps(compiled))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, **env))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
