"""In-process microbenchmarks: every variant is checked on the corpus before it
is timed, unavailable variants become skipped rows, rows land on disk."""
import pytest

from kourier_lab.bench.profile import micro


def _by(rows):
    return {(r["variant"], r["case"]): r for r in rows}


def test_corpora_are_what_they_claim():
    data, n = micro.CORPORA["pipelined256"]
    assert n == 256 and data.count(b"\r\n\r\n") == 256
    browser, _ = micro.CORPORA["browser"]
    assert browser.count(b"\r\n") - 2 >= 10          # ~10 headers besides Host
    assert micro._request_lengths(data, n) == [len(micro.SHORT)] * 256


def test_parsers_and_the_httptools_anchor():
    rows = _by(micro.bench_parsers(["python", "httptools", "httptools+callbacks", "nosuch"],
                                   repeat=2, round_s=0.005, echo=lambda s: None))
    for variant in ("python", "httptools", "httptools+callbacks"):
        for case, (data, nreq) in micro.CORPORA.items():
            r = rows[(variant, case)]
            assert r["status"] == "ok", r
            assert r["requests_per_call"] == nreq and r["bytes_per_call"] == len(data)
            assert r["ns_per_call_min"] <= r["ns_per_call_median"] <= r["ns_per_call_max"]
            assert r["mb_per_s"] > 0 and r["req_per_s"] > 0
    memo_on = micro.bench_parsers(["python+head-memo"], repeat=2, round_s=0.005,
                                  echo=lambda s: None)
    assert [r["status"] for r in memo_on] == ["ok"] * 3       # the memo is its own labelled case
    assert rows[("nosuch", "short")]["status"] == "skipped"
    assert "no parser named 'nosuch'" in rows[("nosuch", "short")]["note"]


def test_buffers_python():
    rows = micro.bench_buffers(["python"], repeat=2, round_s=0.005, echo=lambda s: None)
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows), rows


def test_heap_anchor_is_a_correct_timer_set():
    h = micro.HeapTimers()
    conns = [micro._Conn() for _ in range(300)]
    for i, c in enumerate(conns):
        h.schedule(c, 1.0 + i)
    for c in conns[::2]:
        h.cancel(c)                                  # triggers a compaction
    h.reset(conns[1], 1000.0)
    fired = h.advance(400.0)
    assert conns[1] not in fired and all(c not in fired for c in conns[::2])
    assert set(fired) == set(conns[3::2]) and len(fired) == len(conns[3::2])
    assert h.advance(1000.0) == [conns[1]]


def test_timers_rows():
    rows = _by(micro.bench_timers(None, repeat=2, round_s=0.005, echo=lambda s: None,
                                  connections=500))
    for case in ("schedule+cancel:500", "reset:500", "expire:500"):
        assert rows[("heapq", case)]["status"] == "ok"
        assert rows[("heapq", case)]["ops_per_s"] > 0
        wheel = rows[("wheel", case)]
        assert wheel["status"] == "ok", wheel


def test_run_micro_writes_rows(tmp_path):
    df = micro.run_micro("parsers", quick=True, repeat=1, variants=["python"], out=tmp_path,
                         echo=lambda s: None)
    assert set(df["status"]) == {"ok"} and len(df) == 3
    back = micro.load_micro(tmp_path)
    assert len(back) == 3 and back["machine_cpu_model"].notna().all()
    with pytest.raises(ValueError, match="unknown component"):
        micro.run_micro("loops")
