"""A user's variant by file path, module path or entry point: loaded, validated
with one clear line, served under the Python and C loops, recorded in rows."""
import os
import textwrap
import time

import pytest

from kourier_lab import buffers, loops, parsers
from kourier_lab.registry import VariantError, label, normalize, split_stack
from kourier_lab.server.process import ServerProcess, connect, read_responses, read_until_close

# A user's parser that delegates to the reference parser, except for one path
# that raises inside parse_head (a bug in the user's code).
DELEGATING = '''
from kourier_lab.parsers.python import PythonParser


class Delegating:
    def __init__(self, limits):
        self.inner = PythonParser(limits)

    def parse_head(self, buf, start=0, end=None):
        end = len(buf) if end is None else end
        if bytes(buf[start:end]).startswith(b"GET /raise "):
            raise RuntimeError("user bug")
        n = self.inner.parse_head(buf, start, end)
        self.info = self.inner.info
        return n

    def head(self):
        return self.inner.head()

    def parse_chunked(self, buf, start, end=None):
        return self.inner.parse_chunked(buf, start, end)


class NoChunked:
    def __init__(self, limits):
        pass

    def parse_head(self, buf, start=0, end=None):
        return 0

    def head(self):
        return None
'''

REQ = b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n"


@pytest.fixture(scope="module")
def user_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("user_variant")
    path = d / "my_parser.py"
    path.write_text(DELEGATING)
    return path


def test_file_spec_loads_and_parses(user_file):
    p = parsers.create(f"{user_file}:Delegating")
    assert p.parse_head(REQ) == len(REQ) and p.info[1] == b"/hello"
    src = parsers.source(f"{user_file}:Delegating")
    assert src["path"] == str(user_file) and len(src["sha256"]) == 64


def test_edited_file_is_reloaded(tmp_path):
    path = tmp_path / "edited.py"
    path.write_text(DELEGATING)
    spec = f"{path}:Delegating"
    first = parsers.source(spec)["sha256"]
    path.write_text(DELEGATING.replace("user bug", "another bug"))
    assert parsers.source(spec)["sha256"] != first
    with pytest.raises(RuntimeError, match="another bug"):
        parsers.create(spec).parse_head(b"GET /raise HTTP/1.1\r\n\r\n")


def test_module_spec(user_file, monkeypatch):
    monkeypatch.syspath_prepend(str(user_file.parent))
    p = parsers.create("my_parser:Delegating")
    assert p.parse_head(REQ) == len(REQ)
    assert parsers.source("my_parser:Delegating")["path"] == str(user_file)


@pytest.mark.parametrize("spec,message", [
    ("{d}/nope.py:X", "no such file"),
    ("{d}/my_parser.py:Nope", "defines no 'Nope' (its classes: Delegating, NoChunked)"),
    ("{d}/my_parser.py", "name the class after a colon"),
    ("{d}/my_parser.py:NoChunked", "has no method parse_chunked()"),
    ("no_such_module_here:X", "no module named 'no_such_module_here'"),
    ("os.path:Nope", "module os.path has no attribute 'Nope'"),
])
def test_bad_specs_are_one_clear_line(user_file, spec, message):
    spec = spec.format(d=user_file.parent)
    with pytest.raises(VariantError) as e:
        parsers.create(spec)
    assert message in str(e.value) and "\n" not in str(e.value)
    ok, why = parsers.available(spec)
    assert not ok and message in why


def test_import_error_in_user_file_names_the_line(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("x = 1\nraise ImportError('needs foo')\n")
    with pytest.raises(VariantError, match=r"ImportError: needs foo \(line 2\)"):
        parsers.create(f"{path}:X")


def test_user_buffer_and_loop_specs(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(textwrap.dedent('''
        from kourier_lab.buffers.python import RingBuffer as ReadBuffer, WriteBuffer
        from kourier_lab.loops.python import PythonLoop as MyLoop

        class Pair:
            ReadBuffer = ReadBuffer
            WriteBuffer = WriteBuffer

        class Half:
            ReadBuffer = ReadBuffer
    '''))
    rb = buffers.create_read(f"{path}:Pair", 64, 1024)
    assert len(rb) == 0 and rb.limit == 1024       # (capacity is allocated on first use)
    assert len(buffers.create_write(f"{path}:Pair", 100)) == 0
    with pytest.raises(VariantError, match="needs ReadBuffer and WriteBuffer"):
        buffers.create_read(f"{path}:Half")
    assert loops.available(f"{path}:MyLoop") == (True, "")
    assert loops.supports(f"{path}:MyLoop", "python", f"{path}:Pair") == (True, "")


def test_entry_points(tmp_path, monkeypatch):
    """An installed distribution's kourier_lab.parsers entry point is a parser name."""
    (tmp_path / "ep_parser.py").write_text(DELEGATING)
    dist = tmp_path / "ep_parser-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-parser\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[kourier_lab.parsers]\nmine = ep_parser:Delegating\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = parsers._REGISTRY
    monkeypatch.setattr(reg, "_entry_points", None)
    try:
        assert "mine" in parsers.names()
        assert parsers.create("mine").parse_head(REQ) == len(REQ)
        assert parsers.source("mine")["path"] == str(tmp_path / "ep_parser.py")
    finally:
        reg._entries.pop("mine", None)
        reg._sources.pop("mine", None)
        reg._entry_points = None


def test_split_stack_and_labels():
    assert split_stack("c/c/c") == ("c", "c", "c")
    assert split_stack("c/experiments/naive.py:Naive/c") == ("c", "experiments/naive.py:Naive", "c")
    assert split_stack("python/pkg.mod:P/python") == ("python", "pkg.mod:P", "python")
    assert split_stack("python//abs/dir/n.c:fast/python") == ("python", "/abs/dir/n.c:fast", "python")
    assert split_stack("a/b/c/d") is None
    assert label("/a/b/naive.py:Naive") == "naive.py:Naive" and label("c") == "c"
    assert normalize("naive.py:N", "/x/y") == "/x/y/naive.py:N"
    assert normalize("pkg.mod:N", "/x/y") == "pkg.mod:N" and normalize("c") == "c"


def test_experiment_paths_are_relative_to_the_file(tmp_path, user_file):
    from kourier_lab.bench.experiment import load_experiment
    from kourier_lab.bench.experiment.targets import expand_targets
    exp_file = user_file.parent / "mine.toml"
    exp_file.write_text('stacks = ["python/my_parser.py:Delegating/python", "c/nope.py:X/c"]\n')
    exp = load_experiment(exp_file)
    assert exp.stacks[0] == f"python/{user_file}:Delegating/python"
    targets = {t.name: t for t in expand_targets(exp.stacks, [])}
    mine = targets["python/my_parser.py:Delegating/python"]
    assert mine.parser == f"{user_file}:Delegating" and not mine.skip_reason
    assert "no such file" in targets["c/nope.py:X/c"].skip_reason


def test_rows_record_the_source(user_file):
    from kourier_lab.bench.run.rows import variant_sources as _variant_sources
    from kourier_lab.bench.experiment.targets import Target
    t = Target("stack", "x", "python", f"{user_file}:Delegating", "python")
    cols = _variant_sources(t)
    assert cols["parser_source"] == str(user_file) and len(cols["parser_sha256"]) == 64
    assert cols["loop_source"] == "kourier_lab/loops/python.py"


def test_supports_user_parsers():
    spec = "x.py:P"
    assert loops.supports("c", spec, "c")[0]
    assert not loops.supports("c", spec, "python")[0]
    assert not loops.supports("numba", spec, "numba")[0]


@pytest.mark.parametrize("loop,buffer", [("python", "python"), ("c", "c")])
def test_serve_user_parser(user_file, loop, buffer):
    """Served from a file outside the repository; an exception inside the user's
    parser answers 500 and closes that connection, the server keeps serving and
    its log names the input."""
    with ServerProcess("--request-timeout", "2", loop=loop, parser=f"{user_file}:Delegating",
                       buffer=buffer) as srv:
        s = connect(srv.port)
        s.sendall(REQ * 3)
        assert [r[0] for r in read_responses(s, 3)] == [200] * 3
        s.close()
        s = connect(srv.port)
        s.sendall(b"GET /raise HTTP/1.1\r\nHost: a\r\n\r\n")
        data, closed = read_until_close(s)
        assert data.startswith(b"HTTP/1.1 500 ") and closed
        s = connect(srv.port)
        s.sendall(REQ)
        assert read_responses(s, 1)[0][0] == 200
        s.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any("user bug" in ln for ln in srv.stderr_lines):
            time.sleep(0.05)
        line = next(ln for ln in srv.stderr_lines if "user bug" in ln)
        assert "RuntimeError: user bug" in line and "GET /raise HTTP/1.1" in line


def test_serve_cli_bad_spec_is_one_line(tmp_path, capsys):
    from kourier_lab.cli import main
    assert main(["serve", "--parser", str(tmp_path / "missing.py:X")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err


# --- a user's C parser (parsers/user_c.py) -----------------------------------
TINY_C = r'''
/* GET-only toy: the request line's three parts, the head up to the blank line */
#include <string.h>
#include "kourier_lab.h"

int tiny_parse_head(const uint8_t *buf, size_t len, const kl_limits *limits, kl_request *req)
{
    (void)limits;
    size_t i = 0;
    while (i + 3 < len && memcmp(buf + i, "\r\n\r\n", 4) != 0)
        i++;
    if (i + 3 >= len)
        return 0;
    const uint8_t *sp1 = memchr(buf, ' ', i), *sp2 = sp1 ? memchr(sp1 + 1, ' ', i - (sp1 + 1 - buf)) : NULL;
    if (!sp2 || buf[0] == 'X')
        return -400;
    memset(req, 0, offsetof(kl_request, names));
    req->head_len = (uint32_t)(i + 4);
    req->method.len = (uint32_t)(sp1 - buf);
    req->target.off = req->path.off = (uint32_t)(sp1 + 1 - buf);
    req->target.len = req->path.len = (uint32_t)(sp2 - sp1 - 1);
    req->version_minor = 1;
    req->keep_alive = 1;
    req->content_length = -1;
    return (int)req->head_len;
}
'''


@pytest.fixture(scope="module")
def tiny_c(tmp_path_factory):
    d = tmp_path_factory.mktemp("user_c")
    (d / "tiny.c").write_text(TINY_C)
    old = os.environ.get("KOURIER_LAB_CACHE")
    os.environ["KOURIER_LAB_CACHE"] = str(d / "cache")      # the server processes inherit it
    yield d / "tiny.c"
    if old is None:
        os.environ.pop("KOURIER_LAB_CACHE", None)
    else:
        os.environ["KOURIER_LAB_CACHE"] = old


def test_c_parser_compiles_on_demand_into_the_cache(tiny_c):
    p = parsers.create(str(tiny_c))
    assert p.parse_head(b"xx" + REQ, 2) == len(REQ) and p.info[:2] == (b"GET", b"/hello")
    assert p.parse_head(b"XGET / HTTP/1.1\r\n\r\n") == -400
    assert p.parse_chunked(bytearray(b"5\r\nhello\r\n0\r\n\r\n"), 0) == (15, b"hello")   # the built-in
    head, chunked = p.native_entry_points()
    assert head and chunked
    assert list((tiny_c.parent / "cache").glob("*/_kl_user_tiny_*"))
    assert parsers.source(str(tiny_c))["sha256"] == parsers.source(f"{tiny_c}:tiny")["sha256"]


def test_c_compiler_error_is_one_line(tmp_path):
    bad = tmp_path / "bad.c"
    bad.write_text('#include "kourier_lab.h"\nint bad_parse_head(const uint8_t *b, size_t n, '
                   'const kl_limits *l, kl_request *r) { return n + oops; }\n')
    with pytest.raises(VariantError) as e:
        parsers.create(str(bad))
    assert str(e.value).startswith(f"{bad}: does not compile: {bad}:2:"), str(e.value)
    assert "oops" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(VariantError, match="defines no other_parse_head"):
        parsers.create(f"{bad}:other")


@pytest.mark.parametrize("loop,buffer", [("python", "python"), ("c", "c")])
def test_serve_c_parser(tiny_c, loop, buffer):
    """Under the C loop the user's function is called natively (the function-pointer hook)."""
    with ServerProcess(loop=loop, parser=str(tiny_c), buffer=buffer) as srv:
        s = connect(srv.port)
        s.sendall(REQ * 4)
        assert [r[0] for r in read_responses(s, 4)] == [200] * 4
        s.sendall(b"XGET / HTTP/1.1\r\n\r\n")
        data, closed = read_until_close(s)
        assert data.startswith(b"HTTP/1.1 400 ") and closed


# --- a user's Numba kernels (parsers/user_numba.py) ----------------------------
KERNELS = '''
from numba import njit
from kourier_lab.parsers.user_numba import (W_HEAD_LEN, W_HEADER_COUNT, W_METHOD, W_PATH, W_TARGET,
                                            find_lf, kernel_parser, put_content_length, put_flags,
                                            put_span)


@njit(cache=True)
def head_kernel(buf, start, end, lim, t):
    """GET-only toy: the head ends at the first empty line; no validation."""
    pos = start
    while True:
        lf = find_lf(buf, pos, end)
        if lf < 0:
            return 0
        if lf == pos + 1:
            break
        pos = lf + 1
    sp1 = start
    while buf[sp1] != 32:
        sp1 += 1
    sp2 = sp1 + 1
    while buf[sp2] != 32:
        sp2 += 1
    put_span(t, W_METHOD, 0, sp1 - start)
    put_span(t, W_TARGET, sp1 + 1 - start, sp2 - sp1 - 1)
    put_span(t, W_PATH, sp1 + 1 - start, sp2 - sp1 - 1)
    put_flags(t, 1, 0, 1, 0, 0, 0)
    put_content_length(t, -1)
    t[W_HEADER_COUNT] = 0
    t[W_HEAD_LEN] = lf + 1 - start
    return lf + 1 - start


Toy = kernel_parser(head_kernel)
'''


def test_numba_kernels_as_a_parser(tmp_path):
    (tmp_path / "kernels.py").write_text(KERNELS)
    p = parsers.create(f"{tmp_path / 'kernels.py'}:Toy")
    assert p.parse_head(b"xx" + REQ, 2) == len(REQ)
    assert p.info == (b"GET", b"/hello", None, 1, True, 0, -1, False)
    assert p.head().target == b"/hello"
    assert p.parse_heads(REQ * 2) == [(len(REQ), p.info)] * 2
    assert p.parse_chunked(b"5\r\nhello\r\n0\r\n\r\n", 0) == (15, b"hello")     # the built-in kernel


def test_lab_takes_a_user_variant(user_file):
    from kourier_lab import lab
    exp = lab.experiment(loop="c", parser=f"{user_file}:Delegating", buffer="c")
    assert exp.stacks == [f"c/{user_file}:Delegating/c"]
    with pytest.raises(VariantError, match="the numba loop runs with parsers numba only"):
        lab.experiment(loop="numba", parser=f"{user_file}:Delegating", buffer="numba")
