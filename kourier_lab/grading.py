"""Grading a variant: the suites the built-ins pass, run against any variant.

    from kourier_lab import check
    df = check(parser="my_parser.py:MyParser")      # one row per test and case
    df[~df.passed]                                   # what failed, with the input

    kourier-lab check --parser my_parser.py:MyParser [--buffer ...] [--loop ...]

Suites (the same code that grades the built-ins in the test suite; nothing is
copied here):

* contract -- the repository's contract suites (tests/parsers/test_parser_contract.py:
  pipelined streams at random splits, the batch protocol, the head memo;
  tests/buffers/test_buffer_contract.py; tests/server/test_server.py for a loop), run by
  pytest in a child process with the registry's names() narrowed to the
  variant, so every test parametrized over the variants runs for it alone.
* spec -- the language-neutral spec corpus (kourier_lab.spec, tests/spec/):
  for a parser every request case fed whole, byte by byte (every prefix) and
  at random split points, each with its RFC clause; for a buffer or a loop
  every connection script against a server running it.
* strict -- the strict RFC 9112/9110 compliance suite (compliance/strict.py)
  against a real server running the variant (a parser or buffer under the
  Python loop; a loop with the Python parser and buffer): what a client sees.

Each row: suite, test, case, clause (the RFC section the case checks), feed,
input, expected, actual, passed, message.  The report prints passed/failed per
clause and, for each failing clause, its first failing input with the
expected and the actual answer.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

from .errors import UsageError
from .registry import label

KINDS = ("parser", "buffer", "loop")
SUITES = ("contract", "spec", "strict")
_ENV_KIND, _ENV_SPEC, _ENV_OUT = "KOURIER_LAB_CHECK_KIND", "KOURIER_LAB_CHECK_SPEC", "KOURIER_LAB_CHECK_OUT"

# the contract suites of each kind (repository-relative); a missing file is skipped
CONTRACT_FILES = {
    "parser": ["tests/parsers/test_parser_contract.py"],
    "buffer": ["tests/buffers/test_buffer_contract.py"],
    "loop": ["tests/server/test_server.py"],
}

# What each contract test feeds the variant.
FEEDS = {
    "test_valid": "whole; with bytes before and after; every prefix",
    "test_invalid": "whole; with a request after it; every prefix",
    "test_limits": "whole (small limits); every prefix",
    "test_random_splits_pipelined": "200 pipelined heads in random pieces",
    "test_parse_heads_equals_parse_head": "mixed stream in random pieces, batches vs one by one",
    "test_chunked_ok": "whole, between other bytes; every prefix",
    "test_chunked_bad": "whole; every prefix",
}

# (words in a case's name or test, the RFC clause it checks), first match wins
CLAUSES = [
    (("chunked ok", "chunked bad"), "RFC 9112 7.1 chunked transfer coding"),
    (("too long", "414"), "RFC 9112 3: request-line length limit (414)"),
    (("head too large", "too many headers", "fit"), "RFC 6585 5: header limits (431)"),
    (("body too large", "body fits", "cl too large", "cl overflow"), "RFC 9110 8.6, 15.5.14: body limit (413)"),
    (("bare lf", "bare cr"), "RFC 9112 2.2: lines end with CRLF (bare CR/LF)"),
    (("leading crlf",), "RFC 9112 2.2: leading empty lines"),
    (("host",), "RFC 9112 3.2: Host exactly once, valid"),
    (("cl ", "content-length"), "RFC 9112 6.3, RFC 9110 8.6: Content-Length"),
    (("te ", "chunked", "transfer-encoding"), "RFC 9112 6.1: Transfer-Encoding"),
    (("version", "http/", "1.0"), "RFC 9112 2.3, RFC 9110 2.5: HTTP-version"),
    (("pct", "path", "query", "target", "form", "asterisk", "authority", "connect", "userinfo",
      "pchar", "fragment"), "RFC 9112 3.2, RFC 3986: request-target"),
    (("colon", "name", "obs-fold", "value", "nul", "ctl", "del", "whitespace", "headers", "ows"),
     "RFC 9112 5, RFC 9110 5.5: field lines"),
    (("method",), "RFC 9110 9.1: method = token"),
    (("space", "tab", "request line", "separator"), "RFC 9112 3: request-line = method SP target SP version"),
    (("expect",), "RFC 9110 10.1.1: Expect"),
    (("connection", "keep-alive", "close"), "RFC 9112 9.3: persistence"),
    (("memo",), "kourier_lab head memo: exact answers"),
    (("parse heads", "random splits"), "parser contract: resumable at any byte (kourier_lab.parsers)"),
]


def clause_of(test: str, case: str) -> str:
    """The clause a contract case checks, from the words of its name (whole words
    for the short ones: "te" is Transfer-Encoding, not the end of "absolute")."""
    text = f"{test} {case}".lower().replace("_", " ")
    for words, clause in CLAUSES:
        for w in words:
            w = w.strip()
            if (re.search(rf"(?<![a-z0-9]){re.escape(w)}(?![a-z0-9])", text) if len(w) <= 3
                    else w in text):
                return clause
    if test in ("test_valid", "test_invalid"):
        return "RFC 9112 3, 5: the request table of a valid request"
    return f"contract: {test}"


def _repo_root() -> Path:
    from .paths import repo_root
    return repo_root()


# ---------------------------------------------------------------------------
# the pytest plugin (loaded in the child with -p kourier_lab.grading)


def _narrow_registry(kind: str, spec: str) -> None:
    """Make the variant the only one the test modules see."""
    from . import buffers, loops, parsers
    if kind == "parser":
        parsers.names = lambda: [spec]
    elif kind == "buffer":
        buffers.names = lambda: [spec]
    else:
        loops.names = lambda: [spec]
        loops.combinations = lambda: [(spec, "python", "python")]


def pytest_configure(config):
    kind, spec = os.environ.get(_ENV_KIND), os.environ.get(_ENV_SPEC)
    if kind and spec:
        _narrow_registry(kind, spec)


def _mentions(value, spec) -> bool:
    if isinstance(value, (tuple, list)):
        return any(_mentions(v, spec) for v in value)
    return value == spec


def pytest_collection_modifyitems(session, config, items):
    spec = os.environ.get(_ENV_SPEC)
    if not spec:
        return
    keep = [it for it in items if hasattr(it, "callspec")
            and any(_mentions(v, spec) for v in it.callspec.params.values())]
    deselected = [it for it in items if it not in keep]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
    items[:] = keep


def _short(value, limit=300):
    if isinstance(value, (bytes, bytearray)):
        text = repr(bytes(value[:limit]))
        return text + ("..." if len(value) > limit else "")
    return "" if value is None else repr(value)


def _val(value, limit=60):
    """A field value as shown in expected/actual (None shown as None)."""
    return "None" if value is None else _short(value, limit)


def _expected(params) -> str:
    if "status" in params:
        s = params["status"]
        return "accepted" if s == "ok" else f"rejected with {s} (parse_head returns -{s})"
    if "expected" in params:
        fields = params["expected"][1]
        shown = ", ".join(f"{k}={_val(v)}" for k, v in fields.items())
        return "accepted, whole head" + (f": {shown}" if shown else "")
    if "body" in params:
        return f"the whole body decoded: {_short(params['body'], 80)}"
    return ""


def _actual(item, params) -> str:
    """What the variant answers for the case's input, fed whole."""
    if os.environ.get(_ENV_KIND) != "parser" or "raw" not in params:
        return ""
    from . import parsers
    spec = os.environ[_ENV_SPEC]
    raw = params["raw"]
    try:
        limits = getattr(item.module, "SMALL", None) if item.originalname == "test_limits" else None
        p = parsers.create(spec, limits) if limits is not None else parsers.create(spec)
        if "chunked" in item.originalname:
            n, body = p.parse_chunked(bytearray(raw), 0, len(raw))
            return f"parse_chunked returns {n}" + (f", body {_short(body, 80)}" if n > 0 else "")
        n = p.parse_head(raw)
        if n > 0:
            head = p.head()
            extra = ""
            if "expected" in params:
                diffs = [f"{k}={_val(getattr(head, k, None))}"
                         for k, v in params["expected"][1].items() if getattr(head, k, None) != v]
                extra = (": " + ", ".join(diffs)) if diffs else ""
            return f"accepted (parse_head returns {n} of {len(raw)} bytes){extra}"
        if n == 0:
            return "need more bytes (parse_head returns 0 on the whole input)"
        return f"rejected with {-n}"
    except Exception as e:  # noqa: BLE001 - the variant's own exception is the answer
        return f"raises {type(e).__name__}: {e}"


def pytest_runtest_logreport(report):
    out = os.environ.get(_ENV_OUT)
    # one row per test: its call, or the setup that failed or skipped it
    if not out or not (report.when == "call" or (report.when == "setup" and report.outcome != "passed")):
        return
    item = _ITEMS.get(report.nodeid)
    params = dict(getattr(item, "callspec", None).params) if item is not None and hasattr(item, "callspec") \
        else {}
    test = item.originalname if item is not None else report.nodeid.split("::")[-1].split("[")[0]
    case = params.get("name") or (report.nodeid.split("[", 1)[1].rstrip("]") if "[" in report.nodeid else "")
    failed = report.outcome == "failed"
    message = ""
    if failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        message = crash.message if crash is not None else str(report.longrepr)
        message = " ".join(message.split())[:400]
    kind = os.environ.get(_ENV_KIND)
    clause = clause_of(test, str(case)) if kind == "parser" else f"{kind} contract: {test}"
    row = {"test": test, "case": str(case), "clause": clause,
           "feed": FEEDS.get(test, ""), "input": _short(params.get("raw")),
           "expected": _expected(params), "actual": _actual(item, params) if failed and item else "",
           "passed": not failed, "skipped": report.outcome == "skipped",
           "message": message, "nodeid": report.nodeid, "file": report.nodeid.split("::")[0]}
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")


_ITEMS: Dict[str, object] = {}


def pytest_collection_finish(session):
    for it in session.items:
        _ITEMS[it.nodeid] = it


# ---------------------------------------------------------------------------
# running the suites


def _contract_rows(kind: str, spec: str, timeout: float) -> List[Dict]:
    root = _repo_root()
    files = [f for f in CONTRACT_FILES[kind] if (root / f).is_file()]
    if not files:
        return [{"suite": "contract", "test": "", "case": "", "clause": "", "passed": False,
                 "message": f"no contract suite found under {root / 'tests'} (kourier-lab check "
                            f"runs the repository's suites: run it from a checkout)"}]
    try:
        import pytest  # noqa: F401
    except ImportError:
        raise UsageError("kourier-lab check needs pytest and hypothesis: pip install 'kourier-lab[test]'") \
            from None
    with tempfile.TemporaryDirectory(prefix="kourier-lab-check-") as tmp:
        out = os.path.join(tmp, "rows.jsonl")
        env = dict(os.environ, **{_ENV_KIND: kind, _ENV_SPEC: spec, _ENV_OUT: out})
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + (
            os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "kourier_lab.grading", "-p", "no:cacheprovider",
               "--no-header", "-rN", "--tb=line", "-o", "addopts=", "--rootdir", str(root), *files]
        try:
            proc = subprocess.run(cmd, cwd=str(root), env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            return [{"suite": "contract", "passed": False, "test": "", "case": "", "clause": "",
                     "message": f"the contract suites did not finish within {timeout:g} s"}]
        rows = []
        if os.path.exists(out):
            with open(out) as f:
                rows = [json.loads(line) for line in f if line.strip()]
        if not rows:
            tail = " | ".join(proc.stdout.decode(errors="replace").strip().splitlines()[-3:])
            rows = [{"test": "", "case": "", "clause": "", "passed": False,
                     "message": f"pytest ran no test for {spec!r} (exit {proc.returncode}): {tail}"}]
    for r in rows:
        r["suite"] = "contract"
    return rows


def _spec_rows(kind: str, name: str) -> List[Dict]:
    """The language-neutral spec corpus (kourier_lab.spec, tests/spec/): for a
    parser every request case fed whole, byte by byte and at random splits; for
    a buffer or a loop every connection script against a server running it."""
    try:
        from . import spec as corpus
    except ImportError:
        return []
    if kind == "parser":
        from . import parsers
        cases = {c.name: c for c in corpus.load_request_cases()}
        rows = []
        for r in corpus.check_parser(lambda limits: parsers.create(name, limits)):
            case = cases.get(r.name)
            rows.append({"suite": "spec", "test": r.source.rsplit("/", 1)[-1], "case": r.name,
                         "clause": r.clause, "feed": r.split,
                         "input": _short(case.request) if case is not None else "",
                         "expected": _spec_expected(r.expected, case),
                         "actual": "" if r.passed else _answer_text(r.actual),
                         "passed": bool(r.passed), "skipped": False, "message": ""})
        return rows
    from .server.process import ServerProcess
    stack = {"loop": "python", "parser": "python", "buffer": "python", kind: name}
    rows = []
    try:
        with ServerProcess(*corpus.CONNECTION_SERVER_ARGS, **stack) as srv:
            for script in corpus.load_connection_scripts():
                r = corpus.run_connection_script("127.0.0.1", srv.port, script)
                rows.append({"suite": "spec", "test": r.source.rsplit("/", 1)[-1], "case": r.name,
                             "clause": r.clause, "feed": "a connection script",
                             "input": "" if r.passed else _short(r.transcript, 200),
                             "expected": _answer_text(r.expected),
                             "actual": "" if r.passed else f"step {r.step}: {_answer_text(r.actual)}",
                             "passed": bool(r.passed), "skipped": False, "message": ""})
    except Exception as e:  # noqa: BLE001 - a server that does not serve is the answer
        rows.append({"suite": "spec", "test": "connections", "case": "server", "clause": "", "passed": False,
                     "skipped": False, "message": f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"})
    return rows


def _answer_text(value) -> str:
    """A spec answer (kourier_lab.spec._answer / _judge) in words."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"rejected with {value}" if value >= 400 else str(value)
    if value == "need":
        return "need more bytes (0 on the whole input)"
    if value == "ok":
        return "accepted"
    if isinstance(value, tuple) and value and value[0] == "ok" and len(value) == 4:
        return f"accepted ({value[2]}-byte head, {value[3]}-byte body)"
    if isinstance(value, dict):
        return "accepted, but " + ", ".join(f"{k}={_val(v)}" for k, v in value.items())
    if value is None:
        return ""
    return value if isinstance(value, str) else _short(value, 200)


def _spec_expected(value, case) -> str:
    if value == "ok" and case is not None and case.fields:
        return "accepted: " + ", ".join(f"{k}={_val(v)}" for k, v in case.fields.items())
    if isinstance(value, dict):
        return "accepted: " + ", ".join(f"{k}={_val(v)}" for k, v in value.items())
    return _answer_text(value)


def _strict_rows(kind: str, spec: str, timeout: float) -> List[Dict]:
    from . import compliance
    from .server.process import ServerProcess
    stack = {"loop": "python", "parser": "python", "buffer": "python", kind: spec}
    rows = []
    try:
        with ServerProcess("--request-timeout", "2", "--idle-timeout", "3", "--graceful-timeout", "2",
                           **stack) as srv:
            result = compliance.run(f"127.0.0.1:{srv.port}", suite="strict", timeout=timeout)
    except Exception as e:  # noqa: BLE001 - a server that does not serve is the answer
        return [{"suite": "strict", "test": "strict", "case": "server", "clause": "", "passed": False,
                 "message": f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"}]
    for r in result.rows:
        req = next((f["request"] for f in result.failures if f["case"] == r["case"]), None)
        rows.append({"suite": "strict", "test": r["group"], "case": r["case"], "clause": r["why"],
                     "feed": "over a socket, one connection", "input": _short(req) if req else "",
                     "expected": r["expect"], "actual": "" if r["passed"] else r["observed"],
                     "passed": bool(r["passed"]), "skipped": False, "message": ""})
    return rows


def check(parser: Optional[str] = None, buffer: Optional[str] = None, loop: Optional[str] = None,
          suites=("contract", "spec", "strict"), timeout: float = 600.0, strict_timeout: float = 2.0):
    """Grade variants (a spec each: "file.py:Class", "module:Class", a built-in
    name) with the contract suites and the strict compliance suite; returns a
    DataFrame, one row per test and case (see the module docstring)."""
    import pandas as pd

    from . import buffers as _buffers, loops as _loops, parsers as _parsers
    from .registry import normalize
    regs = {"parser": _parsers, "buffer": _buffers, "loop": _loops}
    wanted = [(k, normalize(v)) for k, v in (("parser", parser), ("buffer", buffer), ("loop", loop)) if v]
    if not wanted:
        raise UsageError("name a variant to check: --parser FILE.py:Class (or --buffer, --loop)")
    for s in suites:
        if s not in SUITES:
            raise UsageError(f"unknown suite {s!r}; choose from {', '.join(SUITES)}")
    rows = []
    for kind, spec in wanted:
        ok, why = regs[kind].available(spec)
        if not ok:
            raise UsageError(why)
        src = regs[kind].source(spec)
        got = []
        if "contract" in suites:
            got += _contract_rows(kind, spec, timeout)
        if "spec" in suites:
            got += _spec_rows(kind, spec)
        if "strict" in suites:
            got += _strict_rows(kind, spec, strict_timeout)
        for r in got:
            rows.append({"component": kind, "variant": spec, "source": src.get("path", ""),
                         "sha256": src.get("sha256", ""), **r})
    cols = ["component", "variant", "suite", "test", "case", "clause", "feed", "input", "expected",
            "actual", "passed", "skipped", "message", "source", "sha256"]
    df = pd.DataFrame(rows)
    for c in cols:
        if c not in df.columns:
            df[c] = "" if c not in ("passed", "skipped") else False
    df["passed"] = df["passed"].astype(bool)
    df["skipped"] = df["skipped"].fillna(False).astype(bool)
    return df[cols + [c for c in df.columns if c not in cols]]


def report(df, failures_shown: int = 20) -> str:
    """The readable report: per variant and suite, passed/failed per clause, then
    each failing clause's first failing input with expected and actual."""
    lines = []
    for (kind, variant), part in df.groupby(["component", "variant"], sort=False):
        ran = part[~part["skipped"]]
        lines.append(f"{kind} {variant}: {int(ran.passed.sum())}/{len(ran)} passed"
                     f" (sha256 {str(part.sha256.iloc[0])[:12]})")
        for suite, sp in ran.groupby("suite", sort=False):
            lines.append(f"  {suite}: {int(sp.passed.sum())}/{len(sp)} passed")
            # contract cases by the clause they check; strict cases (one clause
            # each) by their group; every failing clause is spelled out below
            key = "test" if suite == "strict" else "clause"
            for clause, cp in sp.groupby(key, sort=False):
                bad = int((~cp.passed).sum())
                mark = "ok  " if not bad else "FAIL"
                lines.append(f"    {mark} {int(cp.passed.sum()):>4}/{len(cp):<4} {clause or '(no clause)'}")
        failing = ran[~ran.passed]
        shown = 0
        for (suite, clause), fp in failing.groupby(["suite", "clause"], sort=False):
            if shown >= failures_shown:
                lines.append(f"  ... {failing.groupby(['suite', 'clause']).ngroups - shown} more failing clauses")
                break
            first = fp.iloc[0]
            lines.append(f"  FAIL [{suite}] {clause or '(no clause)'}: {len(fp)} failing; first: "
                         f"{first.test} {first.case!s}".rstrip())
            if first.input:
                lines.append(f"       input:    {first.input}")
            if first.feed:
                lines.append(f"       fed:      {first.feed}")
            if first.expected:
                lines.append(f"       expected: {first.expected}")
            if first.actual:
                lines.append(f"       actual:   {first.actual}")
            if first.message:
                lines.append(f"       detail:   {first.message}")
            shown += 1
    return "\n".join(lines)


def summary(df):
    """Passed / total per variant, suite and clause (contract) or group (strict),
    with the first failing case: the report as a table."""
    import pandas as pd
    out = []
    ran = df[~df["skipped"]]
    for (kind, variant, suite), part in ran.groupby(["component", "variant", "suite"], sort=False):
        key = "test" if suite == "strict" else "clause"
        for clause, cp in part.groupby(key, sort=False):
            bad = cp[~cp.passed]
            out.append({"component": kind, "variant": label(variant), "suite": suite, "clause": clause,
                        "passed": int(cp.passed.sum()), "total": len(cp),
                        "first_failing": "" if bad.empty else f"{bad.iloc[0].case}: {bad.iloc[0].input}"})
    return pd.DataFrame(out)


def cost_per_request(micro, reference: str):
    """From bench.profile.micro parser rows: ns per request of each variant and case, and
    how many times (and ns more than) the reference variant's it costs."""
    import pandas as pd
    ok = micro[micro["status"] == "ok"].copy()
    ok["ns_per_request"] = ok["ns_per_call_median"] / ok["requests_per_call"]
    ref = ok[ok["variant"] == reference].set_index("case")["ns_per_request"]
    rows = []
    for _, r in ok.iterrows():
        base = ref.get(r["case"])
        rows.append({"variant": label(r["variant"]), "case": r["case"], "ns_per_request": r["ns_per_request"],
                     "x_reference": r["ns_per_request"] / base if base else float("nan"),
                     "extra_ns_per_request": r["ns_per_request"] - base if base else float("nan"),
                     "source": r.get("variant_source"), "sha256": r.get("variant_sha256")})
    return pd.DataFrame(rows)


def cost_lines(cost, variant: str, reference: str) -> List[str]:
    """One sentence per case: what `variant` costs per request beside `reference`."""
    variant, reference = label(variant), label(reference)
    lines = []
    for case, part in cost.groupby("case", sort=False):
        a = part[part.variant == variant]
        b = part[part.variant == reference]
        if a.empty or b.empty:
            lines.append(f"{case}: {variant} or {reference} not measured")
            continue
        na, nb = float(a.ns_per_request.iloc[0]), float(b.ns_per_request.iloc[0])
        lines.append(f"{case}: {variant} {na:,.0f} ns per request, {reference} {nb:,.0f} ns: "
                     f"{na - nb:+,.0f} ns ({na / nb:.2f}x)")
    return lines


# ---------------------------------------------------------------------------
# the CLI


def register(sub):
    p = sub.add_parser("check", help="grade a parser, buffer or loop with the contract and strict suites",
                       description=__doc__.splitlines()[0])
    p.add_argument("--parser", default=None, help="FILE.py:Class, module:Class, FILE.c:prefix or a name")
    p.add_argument("--buffer", default=None, help="FILE.py:Name, module:Name or a name")
    p.add_argument("--loop", default=None, help="FILE.py:Class, module:Class or a name")
    p.add_argument("--suite", choices=(*SUITES, "all"), default="all",
                   help="which suites (default all: contract, spec, strict)")
    p.add_argument("--csv", default=None, help="also write every row to this CSV file")
    p.set_defaults(func=_main)


def _main(args) -> int:
    suites = SUITES if args.suite == "all" else (args.suite,)
    df = check(parser=args.parser, buffer=args.buffer, loop=args.loop, suites=suites)
    print(report(df))
    if args.csv:
        df.to_csv(args.csv, index=False)
    return 0 if bool(df[~df.skipped].passed.all()) else 1
