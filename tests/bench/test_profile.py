"""kourier-lab profile: the folded-stack renderer, strace's table, the stage
counters (off by default, on by the switch), exact instruction counts, and
one quick end-to-end run of the command on the Python stack."""
import json
import shutil
import socket

import pytest

from kourier_lab.bench.profile import flame, instructions, stack as profile
from kourier_lab.loops import stages

PERF_SCRIPT = """python3 4242/4243 [000] 100.000001:    1001001 cpu-clock:
\t    7f00aa11 kl_parse_head+0x21 (/x/_native_parser.so)
\t    7f00bb22 on_readable.part.0+0x10 (/x/_native_loop.so)
\t    7f00cc33 kl_loop_run+0x99 (/x/_native_loop.so)

python3 4242/4243 [000] 100.000002:    1001001 cpu-clock:
\t    7f00aa99 [unknown] (/usr/lib/libc.so.6)
\t    7f00cc33 kl_loop_run+0x99 (/x/_native_loop.so)

other 9999 [001] 100.000003:    1001001 cpu-clock:
\t    7f00dd44 spin+0x1 (/bin/other)
"""


def test_fold_perf_script_keeps_the_asked_threads_and_names_unknown_frames():
    folded = flame.fold_perf_script(PERF_SCRIPT, pids=[4243])
    assert folded == {"python3;kl_loop_run;on_readable.part.0;kl_parse_head": 1,
                      "python3;kl_loop_run;[libc.so.6]": 1}
    assert sum(flame.fold_perf_script(PERF_SCRIPT).values()) == 3


def test_render_svg_draws_every_frame_with_its_share():
    svg = flame.render_svg({"a;b;c": 3, "a;d": 1}, title="t")
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "c: 3 samples (75.0%)" in svg and "d: 1 samples (25.0%)" in svg
    assert "a: 4 samples (100.0%)" in svg


def test_render_svg_is_well_formed_xml_whatever_a_frame_is_named():
    # a frame read from a running process may carry control bytes or markup
    from xml.dom import minidom
    svg = flame.render_svg({"<module>;a&b;half\x01read\x1bname\ud800": 5}, title="t <x>")
    doc = minidom.parseString(svg)
    titles = [t.firstChild.data for t in doc.getElementsByTagName("title")]
    assert "<module>: 5 samples (100.0%)" in titles and "a&b: 5 samples (100.0%)" in titles


def test_read_folded_sums_stacks_and_skips_lines_without_a_count():
    text = "a;b 3\na;b 2\nmain (x.py:1);f (y.py:2) 7\nnot a stack\n"
    assert flame.read_folded(text) == {"a;b": 5, "main (x.py:1);f (y.py:2)": 7}


STRACE = """% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 61.00    0.610000          12     50000           sendto
 38.00    0.380000           7     50000      1200 recvfrom
  1.00    0.010000          10      1000           epoll_wait
------ ----------- ----------- --------- --------- ----------------
100.00    1.000000           9    101000      1200 total
"""


def test_parse_strace_summary():
    assert profile.parse_strace_summary(STRACE) == {"sendto": 50000, "recvfrom": 50000, "epoll_wait": 1000}


def test_unknown_stack_and_shape_get_one_clear_line():
    with pytest.raises(profile.ProfileError, match="unknown stack 'nope'"):
        profile.resolve_stack("nope")
    with pytest.raises(profile.ProfileError, match="unknown shape 'rate'"):
        profile._shape("rate", quick=True)
    assert profile.resolve_stack("python") == ("python", "python", "python")


def _serve_once(monkeypatch, tmp_path, switch):
    from kourier_lab.server.config import ServerConfig
    from kourier_lab.server.demo import app
    from kourier_lab.server.process import read_responses
    from tests.threaded_loop import serving
    if switch:
        monkeypatch.setenv(stages.ENV, str(tmp_path / "st"))
    else:
        monkeypatch.delenv(stages.ENV, raising=False)
    with serving(ServerConfig(), app) as (loop, port):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n" * 64)
            assert len(read_responses(s, 64)) == 64
    return loop


def test_stage_counters_are_off_by_default(monkeypatch, tmp_path):
    loop = _serve_once(monkeypatch, tmp_path, switch=False)
    assert loop.stages is None
    assert not list(tmp_path.iterdir())


def test_stage_counters_on_count_every_request_and_stage(monkeypatch, tmp_path):
    loop = _serve_once(monkeypatch, tmp_path, switch=True)
    (record,) = [json.loads(p.read_text()) for p in tmp_path.glob("st.*.json")]
    assert record["loop"] == "python" and record["requests"] == 64
    assert set(record["ns"]) == set(stages.STAGES)
    assert record["ns"]["parse"] > 0 and record["ns"]["read"] > 0 and record["ns"]["write"] > 0
    assert loop.stages is not None


@pytest.mark.skipif(not shutil.which("valgrind") or not shutil.which("cc"), reason="needs valgrind and cc")
def test_c_parser_instruction_counts_are_exact_and_per_simd_path():
    rows = instructions.count_parsers(("c",), rounds=8, corpora=("short",), simd=("scalar",),
                                      echo=lambda *_: None)
    ok = [r for r in rows if r["status"] == "ok"]
    assert [r["simd"] for r in ok] == ["scalar"]
    again = instructions.count_parsers(("c",), rounds=8, corpora=("short",), simd=("scalar",),
                                       echo=lambda *_: None)
    assert [r["instructions"] for r in ok] == [r["instructions"] for r in again if r["status"] == "ok"]
    for r in ok:
        assert 50 < r["instructions_per_request"] < 5000
        assert r["instructions_per_byte"] == pytest.approx(r["instructions_per_request"] / 45)


@pytest.mark.skipif(not shutil.which("wrk") or not shutil.which("strace"), reason="needs wrk and strace")
def test_profile_command_on_the_python_stack(tmp_path):
    df = profile.profile("python", "pipelined", out=tmp_path / "fig", results=tmp_path / "res", quick=True,
                         measures=("cpu", "stages", "syscalls"), echo=lambda *_: None)
    assert set(df["measure"]) >= {"cpu", "stage", "overhead", "syscall"}
    st = df[df["measure"] == "stage"]
    assert set(st["name"]) == set(stages.STAGES) | {"other"} and st["stage_counters"].all()
    assert not df[df["measure"] == "cpu"]["stage_counters"].any()
    calls = df[df["measure"] == "syscall"].set_index("name")["value"]
    assert calls.get("sendto", calls.get("sendmsg", 0)) > 0
    assert (tmp_path / "fig" / "profile-python-python-python-pipelined-stages.png").is_file()
    assert list((tmp_path / "res").glob("*/profile.parquet"))


