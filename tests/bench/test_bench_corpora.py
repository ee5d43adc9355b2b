"""The request corpora of the distinct / real / api shapes (bench/experiment/corpora.py):
the same bytes from the same seed, the committed files are those bytes, every
request a valid HTTP/1.1 request for the project's parser, no two alike."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kourier_lab import parsers
from kourier_lab.bench.experiment import corpora

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """Every corpus written anew from the default seed."""
    out = tmp_path_factory.mktemp("corpora")
    for name in corpora.CORPORA:
        corpora.write(name, out)
    return out


@pytest.mark.parametrize("name", list(corpora.CORPORA))
def test_generated_from_the_seed_byte_for_byte_and_committed(name, fresh):
    again = corpora.encode(name, corpora.generate(name))
    assert (fresh / f"{name}.corpus").read_bytes() == again
    committed = ROOT / "data" / "corpora" / f"{name}.corpus"
    assert committed.read_bytes() == again, (
        f"{committed} is not what `kourier-lab corpora` writes: regenerate and commit it")
    assert corpora.generate(name, seed=1) != corpora.generate(name)      # the seed matters


def _parse_all(name, requests):
    """Each request through the python parser (and its body, if any): exactly its bytes."""
    p = parsers.create("python")
    infos = []
    for req in requests:
        n = p.parse_head(req, 0, len(req))
        assert n > 0, (name, n, req[:120])
        info = p.info
        kind = info[5]
        if kind == parsers.BODY_LENGTH:
            assert n + info[6] == len(req), req
        elif kind == parsers.BODY_CHUNKED:
            m, body = p.parse_chunked(req, n, len(req))
            assert m > 0 and n + m == len(req), req
        else:
            assert n == len(req), req
        assert info[3] == 1 and info[4]                  # HTTP/1.1, keep-alive
        infos.append((info, p.head()))
    return infos


@pytest.mark.parametrize("name", list(corpora.CORPORA))
def test_every_request_parses_and_no_two_are_alike(name):
    _, requests = corpora.decode(corpora.corpus_path(name).read_bytes())
    assert len(requests) == corpora.CORPORA[name].count
    assert len(set(requests)) == len(requests)          # so every batch of <= count differs
    _parse_all(name, requests)


def test_distinct_is_the_posts_minimal_head_in_its_size_class():
    _, reqs = corpora.decode(corpora.corpus_path("distinct").read_bytes())
    assert all(40 <= len(r) <= 80 for r in reqs)
    for info, head in _parse_all("distinct", reqs[:500]):
        assert info[0] == b"GET" and [k.lower() for k, _ in head.headers] == [b"host"]
    # a pipelined batch as wrk sends it: 256 consecutive requests, 256 targets
    assert len({r.split(b" ")[1] for r in reqs[:256]}) == 256
    assert sum(b"?" in r.split(b" ")[1] for r in reqs) > len(reqs) // 3


def test_real_requests_are_browser_like_and_vary():
    _, reqs = corpora.decode(corpora.corpus_path("real").read_bytes())
    sets, agents, cookies = set(), set(), []
    for info, head in _parse_all("real", reqs):
        names = [k.lower() for k, _ in head.headers]
        assert {b"host", b"user-agent", b"accept", b"accept-encoding"} <= set(names)
        sets.add(tuple(names))
        fields = {k.lower(): v for k, v in head.headers}
        agents.add(fields[b"user-agent"])
        cookies.append(len(fields.get(b"cookie", b"")))
    assert len(sets) >= 10 and 3 <= len(agents) <= 10
    assert max(cookies) <= 600 and min(cookies) == 0 and max(cookies) > 300
    assert sum(b"Referer:" in r for r in reqs) > len(reqs) // 4


def test_api_mixes_gets_and_json_posts_for_the_demo_handlers():
    _, reqs = corpora.decode(corpora.corpus_path("api").read_bytes())
    kinds = {}
    for info, head in _parse_all("api", reqs):
        path = info[1]
        assert path in (b"/json", b"/path", b"/echo"), path
        kinds.setdefault((info[0], info[5]), 0)
        kinds[(info[0], info[5])] += 1
    assert {(b"GET", parsers.BODY_NONE), (b"POST", parsers.BODY_LENGTH),
            (b"POST", parsers.BODY_CHUNKED)} <= set(kinds)
    assert corpora.CORPORA["api"].app == "demo"


def test_demo_app_answers_every_api_request_200():
    from kourier_lab.server.demo import app
    p = parsers.create("python")
    _, reqs = corpora.decode(corpora.corpus_path("api").read_bytes())
    for req in reqs[:200]:
        n = p.parse_head(req, 0, len(req))
        method, path = p.info[0], p.info[1]
        route = app.resolve(method, path)
        assert callable(route), (method, path)
        from kourier_lab.server.app import Request
        body = req[n:]
        if p.info[5] == parsers.BODY_CHUNKED:
            body = p.parse_chunked(req, n, len(req))[1]
        out = app.call(route, Request(method.decode(), path.decode(), None, "HTTP/1.1",
                                      p.head().headers, body), 1, True)
        assert out.startswith(b"HTTP/1.1 200 "), out[:60]


def test_decode_rejects_what_is_not_a_corpus():
    with pytest.raises(corpora.CorpusError, match="not a kourier corpus"):
        corpora.decode(b"GET / HTTP/1.1\r\n\r\n")
    good = corpora.encode("x", [b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"])
    with pytest.raises(corpora.CorpusError, match="cut short"):
        corpora.decode(good[:-3])
    assert corpora.decode(good) == ("x", [b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"])


def test_a_missing_file_is_regenerated_and_described(tmp_path):
    path = corpora.ensure("distinct", tmp_path)
    assert path.read_bytes() == corpora.corpus_path("distinct").read_bytes()
    info = corpora.info("distinct", tmp_path)
    assert info.requests == 4096 and 40 <= info.mean_request_bytes <= 80
    assert re.fullmatch(r"[0-9a-f]{64}", info.sha256) and len(info.sample) == 256
    with pytest.raises(corpora.CorpusError, match="unknown corpus"):
        corpora.ensure("nope", tmp_path)


def test_corpora_command_writes_the_same_files(tmp_path):
    r = subprocess.run([sys.executable, "-m", "kourier_lab.cli", "corpora", "--out", str(tmp_path),
                        "distinct"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "4096 requests" in r.stdout
    assert (tmp_path / "distinct.corpus").read_bytes() == corpora.corpus_path(
        "distinct").read_bytes()
