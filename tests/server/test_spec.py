"""The spec corpus (tests/spec/, kourier_lab/spec.py) over every parser and every loop.

One test per (parser, request case), every split inside it; one per (stack,
connection script), one server per stack.  Scripts that wait on the server's
timers (spec.ConnectionScript.timed: a 408, or long pauses) run on one stack
per loop, since timers are the loop's; every other script on every stack.
A failure names the fixture's file:line, the RFC clause and the split.
"""
import pytest

from kourier_lab import loops, parsers, spec
from kourier_lab.server.process import ServerProcess

REQUEST_CASES = spec.load_request_cases()
SCRIPTS = spec.load_connection_scripts()
COMBOS = loops.combinations()
# one stack per loop for the timed scripts: its own parser and buffer when it has them
TIMER_STACKS = {}
for _c in COMBOS:
    if _c[0] not in TIMER_STACKS or _c == (_c[0], _c[0], _c[0]):
        TIMER_STACKS[_c[0]] = _c


def _fail_lines(results):
    return "\n".join(f"{r.source} [{r.split}] {r.name} ({r.clause}): expected {r.expected!r}, got {r.actual!r}"
                     for r in results if not r.passed)


@pytest.mark.parametrize("parser_name", parsers.names())
@pytest.mark.parametrize("case", REQUEST_CASES, ids=[c.name for c in REQUEST_CASES])
def test_request_case(parser_name, case):
    results = spec.check_parser(lambda limits: parsers.create(parser_name, limits), cases=[case])
    assert len(results) == len(spec.SPLITS)
    assert all(r.passed for r in results), _fail_lines(results)


@pytest.mark.parametrize("parser_name", parsers.names())
def test_request_case_with_head_memo(parser_name):
    """The head memo (a knob) gives the corpus's answers too (whole feeds only: it
    remembers heads, so the same parser object sees every case)."""
    memo = parsers.create(parser_name, head_memo=True)
    results = spec.check_parser(lambda limits: memo if limits == memo.limits else
                                parsers.create(parser_name, limits, head_memo=True),
                                splits=("whole",), cases=REQUEST_CASES)
    assert all(r.passed for r in results), _fail_lines(results)


def _serve(combo):
    loop, parser, buffer = combo
    # (a Numba loop compiles at start: minutes on a loaded machine)
    srv = ServerProcess(*spec.CONNECTION_SERVER_ARGS, loop=loop, parser=parser, buffer=buffer).start(timeout=300)
    yield srv
    assert srv.stop() == 0


@pytest.fixture
def server(connection_server):
    """The stack's shared server (conftest.py)."""
    return connection_server


@pytest.fixture(scope="module", params=list(TIMER_STACKS.values()),
                ids=["/".join(c) for c in TIMER_STACKS.values()])
def timer_server(request):
    yield from _serve(request.param)


def _play(srv, script):
    r = spec.run_connection_script("127.0.0.1", srv.port, script)
    assert r.passed, (f"{r.source} {r.name} ({r.clause}): step {r.step} {script.steps[r.step][0]}: "
                      f"expected {r.expected!r}, got {r.actual!r}; the server sent {r.transcript[:300]!r}")



@pytest.mark.timeout(60)
@pytest.mark.parametrize("script", [s for s in SCRIPTS if not s.timed],
                         ids=[s.name for s in SCRIPTS if not s.timed])
def test_connection_script(server, script):
    _play(server, script)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("script", [s for s in SCRIPTS if s.timed], ids=[s.name for s in SCRIPTS if s.timed])
def test_timed_connection_script(timer_server, script):
    _play(timer_server, script)


def test_loader_errors_name_the_line(tmp_path):
    (tmp_path / "requests").mkdir()
    (tmp_path / "requests" / "x.txt").write_text("## a\nclause: RFC 9112 3\nrequest: GET\nexpect: 299\n")
    with pytest.raises(spec.SpecError, match=r"x.txt:4: expect is ok or one of"):
        spec.load_request_cases(tmp_path)
    (tmp_path / "requests" / "x.txt").write_text("stray\n")
    with pytest.raises(spec.SpecError, match=r"x.txt:1: a line outside a case"):
        spec.load_request_cases(tmp_path)


def test_check_parser_reports_a_wrong_parser():
    """check_parser can fail: a parser that accepts every bad request fails those cases."""
    class Lenient:
        def __init__(self, limits):
            self.inner = parsers.create("python", limits)
            self.limits = limits
            self.info = None

        def parse_head(self, buf, start=0, end=None):
            n = self.inner.parse_head(buf, start, end)
            self.info = self.inner.info
            return 0 if n < 0 else n

        def head(self):
            return self.inner.head()

        def parse_chunked(self, buf, start, end=None):
            return self.inner.parse_chunked(buf, start, end)

    results = spec.check_parser(Lenient, splits=("whole",))
    bad = [r for r in results if not r.passed]
    assert bad and all(r.expected != "ok" for r in bad)
    assert {r.split for r in results} == {"whole"}
