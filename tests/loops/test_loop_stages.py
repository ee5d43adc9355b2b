"""Stage counters on the C loop's two drivers: every stage a request passes
through is counted, the read stage included (on io_uring the kernel receives
inside io_uring_enter: that call's CPU time is the read stage)."""
import json
import socket

import pytest

from kourier_lab import loops
from kourier_lab.loops import stages
from tests.threaded_loop import serving

URING_OK, URING_WHY = loops.available("uring")
LOOPS = ["c", pytest.param("uring", marks=pytest.mark.skipif(not URING_OK, reason=f"uring: {URING_WHY}"))]


@pytest.mark.parametrize("loop_name", LOOPS)
def test_stage_counters_count_read_parse_and_write(monkeypatch, tmp_path, loop_name):
    from kourier_lab.server.config import ServerConfig
    from kourier_lab.server.demo import app
    from kourier_lab.server.process import read_responses
    monkeypatch.setenv(stages.ENV, str(tmp_path / "st"))
    with serving(ServerConfig(loop=loop_name, parser="c", buffer="c"), app) as (_, port):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            for _ in range(4):
                s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n" * 64)
                assert len(read_responses(s, 64)) == 64
    (record,) = [json.loads(p.read_text()) for p in tmp_path.glob("st.*.json")]
    assert record["requests"] == 256
    assert set(record["ns"]) == set(stages.STAGES)
    for stage in ("read", "parse", "write"):
        assert record["ns"][stage] > 0, (stage, record)
