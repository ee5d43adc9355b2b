"""`kourier-lab check` / kourier_lab.check: the built-ins' suites graded against a
user's variant from a file outside the repository."""
import pytest

import kourier_lab
from kourier_lab.cli import main
from kourier_lab.errors import UsageError

# A naive parser: split on CRLF, no validation at all.
NAIVE = '''
from kourier_lab.parsers import BODY_LENGTH, BODY_NONE, RequestHead


class Naive:
    def __init__(self, limits):
        self.info = None

    def parse_head(self, buf, start=0, end=None):
        end = len(buf) if end is None else end
        data = bytes(buf[start:end])
        stop = data.find(b"\\r\\n\\r\\n")
        if stop < 0:
            return 0
        lines = data[:stop].split(b"\\r\\n")
        method, target, version = lines[0].split(b" ")
        headers = [tuple(x.strip() for x in line.split(b":", 1)) for line in lines[1:]]
        path, _, query = target.partition(b"?")
        clen = next((int(v) for k, v in headers if k.lower() == b"content-length"), -1)
        minor = 1 if version == b"HTTP/1.1" else 0
        self.info = (method, path, query or None, minor, True,
                     BODY_LENGTH if clen >= 0 else BODY_NONE, clen, False)
        self._head = RequestHead(method, target, path, query or None, minor, 0, headers,
                                 head_len=stop + 4)
        return stop + 4

    def head(self):
        return self._head

    def parse_chunked(self, buf, start, end=None):
        return -501, None
'''


@pytest.fixture(scope="module")
def naive(tmp_path_factory):
    path = tmp_path_factory.mktemp("check") / "naive.py"
    path.write_text(NAIVE)
    return f"{path}:Naive"


@pytest.fixture(scope="module")
def graded(naive):
    return kourier_lab.check(parser=naive)


def test_naive_parser_fails_the_strictness_clauses(graded, naive):
    assert set(graded.suite) == {"contract", "spec", "strict"}
    assert (graded.variant == naive).all() and len(graded.sha256.iloc[0]) == 64
    spec_rows = graded[graded.suite == "spec"]
    assert set(spec_rows.feed) == {"whole", "bytewise", "random"}
    bare_lf = spec_rows[spec_rows.case.str.endswith("bare LF request line") & (spec_rows.feed == "whole")].iloc[0]
    assert not bare_lf.passed
    assert bare_lf.clause.startswith("RFC 9112 2.2")
    assert bare_lf.expected == "rejected with 400"
    assert bare_lf.actual.startswith("ValueError")          # the naive split raised
    assert bare_lf.input == repr(b"GET / HTTP/1.1\nHost: x\r\n\r\n")
    token = spec_rows[spec_rows.case.str.endswith("method not token") & (spec_rows.feed == "whole")].iloc[0]
    assert token.actual.startswith("accepted (38-byte head")
    no_host = graded[(graded.suite == "strict") & ~graded.passed & graded.clause.str.contains("without Host")]
    assert len(no_host) == 1 and no_host.iloc[0].input
    # what it gets right passes: a plain GET is served over a socket
    assert graded[(graded.suite == "strict") & (graded.test == "liveness")].passed.all()


def test_report_names_clause_input_expected_actual(graded):
    text = kourier_lab.grading.report(graded, failures_shown=100)
    assert "FAIL [spec] RFC 9112 2.2" in text
    assert "expected: rejected with 400" in text and "actual:   ValueError" in text
    assert "FAIL [contract] " in text and "FAIL [strict] " in text
    table = kourier_lab.grading.summary(graded)
    assert (table.passed <= table.total).all() and (table.passed < table.total).any()


def test_cli_builtin_passes_and_naive_fails(naive, capsys):
    assert main(["check", "--parser", "python", "--suite", "contract"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("parser python: ") and "FAIL" not in out
    assert main(["check", "--parser", naive, "--suite", "contract"]) == 1
    assert "FAIL [contract]" in capsys.readouterr().out


def test_bad_variant_is_one_line(tmp_path, capsys):
    with pytest.raises(UsageError, match="no such file"):
        kourier_lab.check(parser=str(tmp_path / "missing.py:X"))
    assert main(["check", "--parser", str(tmp_path / "missing.py:X")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["check"]) == 2


def test_check_a_user_buffer(tmp_path):
    """The buffer contract (model-based state machines, socketpairs) for a buffer by file."""
    (tmp_path / "mine.py").write_text(
        "from kourier_lab.buffers.python import RingBuffer, WriteBuffer\n\n\n"
        "class Pair:\n    ReadBuffer = RingBuffer\n    WriteBuffer = WriteBuffer\n")
    df = kourier_lab.check(buffer=f"{tmp_path / 'mine.py'}:Pair", suites=("contract",))
    assert len(df) >= 10 and df.passed.all()
    assert set(df.test) >= {"test_read_buffer_matches_bytes_model", "test_write_buffer_matches_bytes_model"}
    assert (df.clause == "buffer contract: " + df.test).all()
