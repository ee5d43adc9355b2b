"""Instructions per request, exact: valgrind's callgrind counts every
instruction executed (Ir), so the figure does not move with the machine's
noise and can be compared commit to commit.

* The C parser: native/count_parser.c (built here with the C extension's
  flags) parses a corpus ROUNDS times, one kl_parse_head per head, on one SIMD
  path; callgrind collects inside parse_rounds() only (--toggle-collect).
* The Python and Numba parsers: a script parses the corpus with the variant's
  parse_head, one call per head, as a Python loop does; everything the process
  executes is counted (interpreter start, imports, Numba's cache loading), so
  each figure is the difference of two runs, 2R and R rounds, divided by the
  R x requests the second run added.  Only the parse calls differ between them.

The same difference is taken for the C parser too (R and 2R rounds), which
removes the first call's one-time work (choosing the path, warming tables).
Corpora: bench/profile/micro.py's short, browser and pipelined256.
"""
from __future__ import annotations

import ast
import datetime as _dt
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .micro import CORPORA
from ...paths import repo_root

SIMD_PATHS = ("scalar", "sse42", "avx2")
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


class InstructionsError(RuntimeError):
    """valgrind or a compiler is missing, or a counted run failed."""


def valgrind() -> str:
    path = shutil.which("valgrind")
    if not path:
        raise InstructionsError("valgrind is not installed: apt-get install valgrind (make setup does)")
    return path


def valgrind_version() -> str:
    out = subprocess.run([valgrind(), "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


def callgrind_ir(cmd: Sequence[str], toggle: Optional[str] = None, timeout: float = 900,
                 env: Optional[Dict[str, str]] = None) -> int:
    """Instructions executed by `cmd` under callgrind (inside `toggle` only
    when given: a function-name pattern)."""
    with tempfile.TemporaryDirectory() as tmp:
        vg = [valgrind(), "--tool=callgrind", f"--callgrind-out-file={tmp}/callgrind.out"]
        if toggle:
            vg += ["--collect-atstart=no", f"--toggle-collect={toggle}"]
        r = subprocess.run(vg + list(cmd), capture_output=True, text=True, timeout=timeout, env=env)
    if r.returncode != 0:
        tail = " | ".join(r.stderr.strip().splitlines()[-3:])
        raise InstructionsError(f"{' '.join(cmd[:2])} failed under callgrind (exit {r.returncode}): {tail}")
    m = _COLLECTED.search(r.stderr)
    if not m:
        raise InstructionsError("callgrind printed no 'Collected' line")
    return int(m.group(1))


def _extension_cflags() -> List[str]:
    """The flags native/build_parser.py compiles the C extension with."""
    text = (repo_root() / "native" / "build_parser.py").read_text()
    m = re.search(r"^CFLAGS\s*=\s*(\[.*?\])", text, re.M | re.S)
    return ast.literal_eval(m.group(1)) if m else ["-O3", "-std=gnu11"]


def build_count_parser(out_dir: Path) -> Path:
    """native/count_parser.c + parser.c -> out_dir/count_parser."""
    native = repo_root() / "native"
    if not (native / "count_parser.c").is_file():
        raise InstructionsError("native/count_parser.c is not here: the C counts need a source checkout")
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise InstructionsError("no C compiler (cc/gcc): apt-get install build-essential")
    exe = Path(out_dir) / "count_parser"
    cmd = [cc, *_extension_cflags(), "-g", f"-I{native}", "-o", str(exe),
           str(native / "count_parser.c"), str(native / "parser.c")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise InstructionsError(f"building count_parser failed: {r.stderr.strip()[:300]}")
    return exe


def _supported_simd(exe: Path, corpus_file: Path) -> List[str]:
    ok = []
    for path in SIMD_PATHS:
        r = subprocess.run([str(exe), path, "1", str(corpus_file)], capture_output=True, timeout=60)
        if r.returncode == 0:
            ok.append(path)
    return ok


_PY_SCRIPT = r"""
import sys
from kourier_lab import parsers
p = parsers.create(sys.argv[1])
data = bytearray(open(sys.argv[3], "rb").read())
end = len(data)
for _ in range(int(sys.argv[2])):
    pos = 0
    while pos < end:
        k = p.parse_head(data, pos, end)
        if k <= 0:
            raise SystemExit("a head did not parse")
        pos += k
"""


def _row(parser, simd, corpus, nreq, nbytes, ir, rounds, method) -> Dict[str, object]:
    per_req = ir / (rounds * nreq)
    return {"component": "parser", "variant": parser, "simd": simd, "corpus": corpus,
            "requests_per_round": nreq, "bytes_per_round": nbytes, "rounds_counted": rounds,
            "instructions": ir, "instructions_per_request": per_req,
            "instructions_per_byte": per_req * nreq / nbytes, "method": method, "status": "ok", "note": ""}


def count_parsers(parsers: Sequence[str] = ("c", "python", "numba"), rounds: int = 200,
                  py_rounds: int = 800, corpora: Optional[Sequence[str]] = None,
                  simd: Optional[Sequence[str]] = None, echo=print) -> List[Dict[str, object]]:
    """Rows of instructions per request and per byte: the C parser on every
    SIMD path this CPU has, the Python and Numba parsers (their own code plus
    the interpreter's work for each parse_head call).  `rounds` (C) and
    `py_rounds` are R in the 2R - R difference; per pipelined256 round 256
    heads are parsed, so its R is divided by 16 (at least 1)."""
    rows: List[Dict[str, object]] = []
    names = list(corpora or CORPORA)
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for name in names:
            data, nreq = CORPORA[name]
            files[name] = Path(tmp) / f"{name}.http"
            files[name].write_bytes(data)
        if "c" in parsers:
            try:
                exe = build_count_parser(Path(tmp))
                paths = [p for p in _supported_simd(exe, files[names[0]]) if simd is None or p in simd]
                for simd in paths:
                    for name in names:
                        data, nreq = CORPORA[name]
                        r = max(1, rounds // 16) if nreq > 16 else rounds
                        one = callgrind_ir([str(exe), simd, str(r), str(files[name])], "parse_rounds*")
                        two = callgrind_ir([str(exe), simd, str(2 * r), str(files[name])], "parse_rounds*")
                        rows.append(_row("c", simd, name, nreq, len(data), two - one, r,
                                         f"callgrind Ir in parse_rounds(), {2 * r} minus {r} rounds"))
                        echo(f"c/{simd:<6} {name:<13} {rows[-1]['instructions_per_request']:>9.1f} instr/request")
            except InstructionsError as e:
                rows.append({"component": "parser", "variant": "c", "status": "skipped", "note": str(e)})
                echo(f"c: skipped: {e}")
        for variant in [p for p in parsers if p != "c"]:
            for name in names:
                data, nreq = CORPORA[name]
                r = max(1, py_rounds // 16) if nreq > 16 else py_rounds
                try:
                    base = [sys.executable, "-c", _PY_SCRIPT, variant]
                    one = callgrind_ir(base + [str(r), str(files[name])])
                    two = callgrind_ir(base + [str(2 * r), str(files[name])])
                except InstructionsError as e:
                    rows.append({"component": "parser", "variant": variant, "corpus": name,
                                 "status": "skipped", "note": str(e)})
                    echo(f"{variant}: skipped: {e}")
                    break
                rows.append(_row(variant, "", name, nreq, len(data), two - one, r,
                                 f"callgrind Ir of the whole process, {2 * r} minus {r} rounds "
                                 "of parse_head from Python"))
                echo(f"{variant:<8} {name:<13} {rows[-1]['instructions_per_request']:>9.1f} instr/request")
    return rows


def run_instructions(parsers: Sequence[str] = ("c", "python", "numba"), quick: bool = False,
                     out=None, echo=print):
    """count_parsers() as a DataFrame with the run's metadata; out=True writes
    <results>/<stamp>-instructions/instructions.parquet (a path: there)."""
    import pandas as pd

    from ..run.machine import git_commit, machine_info
    from ...paths import results_dir
    rows = count_parsers(parsers, rounds=50 if quick else 200, py_rounds=160 if quick else 800,
                         corpora=("short", "pipelined256") if quick else None, echo=echo)
    stamp = _dt.datetime.now(_dt.timezone.utc)
    try:
        tool = valgrind_version()
    except InstructionsError:
        tool = ""
    meta = {"timestamp": stamp.isoformat(timespec="seconds"), "quick": quick, "tool": tool,
            "git_commit": git_commit(), **machine_info()}
    df = pd.DataFrame([{**meta, **r} for r in rows])
    if out:
        root = results_dir() if out is True else Path(out)
        d = root / f"{stamp.strftime('%Y%m%dT%H%M%SZ')}-instructions"
        d.mkdir(parents=True, exist_ok=True)
        df.to_parquet(d / "instructions.parquet", index=False)
        echo(f"rows: {d / 'instructions.parquet'}")
    return df


def load_instructions(results=None):
    """Every recorded instruction-count row (history across commits)."""
    import pandas as pd

    from ...paths import results_dir
    root = Path(results) if results is not None else results_dir()
    frames = [pd.read_parquet(p) for p in sorted(root.glob("*/instructions.parquet"))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
