"""Allocation failure in the C loop (native/loop.c) closes that connection
cleanly: the answers before the failure arrive whole and in order, nothing
after it (a dropped answer must never shift later answers onto the wrong
requests), and the worker goes on serving other connections."""
import pytest

from kourier_lab import loops
from kourier_lab.server.process import ServerProcess, connect, read_responses, read_until_close

C_STACKS = [c for c in loops.combinations() if c[0] == "c"]
# the uring loop shares loop.c's answers and buffers; its driver takes the write buffer over per send
URING_STACKS = [c for c in loops.combinations() if c[0] == "uring"]
FIRST = C_STACKS[:1] + URING_STACKS[:1]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stack", FIRST, ids=["/".join(c) for c in FIRST])
def test_write_buffer_allocation_failure_never_misaligns(monkeypatch, stack):
    monkeypatch.setenv("KOURIER_LAB_FAIL_WBUF_ALLOC", "3")    # every 3rd write-buffer allocation fails
    loop, parser, buffer = stack
    srv = ServerProcess("--app", "kourier_lab.server.demo:app", loop=loop, parser=parser,
                        buffer=buffer).start()
    try:
        failures = 0
        for round_ in range(6):
            s = connect(srv.port)
            # Python-answered requests (copied into the write buffer), each naming itself
            paths = [f"/path?r={round_}&i={i}" for i in range(200)]
            s.sendall(b"".join(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % p.encode() for p in paths))
            data, closed = read_until_close(s, timeout=5)
            s.close()
            bodies = []
            while data:
                head, sep, rest = data.partition(b"\r\n\r\n")
                assert sep, data[:200]
                n = int([ln.split(b":")[1] for ln in head.split(b"\r\n")
                         if ln.lower().startswith(b"content-length:")][0])
                assert head.startswith(b"HTTP/1.1 200 "), head
                bodies.append(rest[:n])
                data = rest[n:]
            # a prefix of the right answers, in order
            assert bodies == [p.encode() for p in paths[:len(bodies)]]
            if len(bodies) < len(paths):
                assert closed, "answers were dropped but the connection stayed open"
                failures += 1
        assert failures, "the injected failures never happened"
        s = connect(srv.port)            # the worker still serves (a static answer needs no copy)
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        assert read_responses(s, 1)[0][0] == 200
        s.close()
    finally:
        srv.stop()
