"""Coverage-guided differential fuzzing of the parsers with atheris.

Run by tests/parsers/test_fuzz_parsers.py as a subprocess (atheris ends the process):
    python tests/fuzz/parsers_atheris.py SEED_DIR -max_total_time=8
Each input is a split point byte and request bytes; every parser variant
(python, numba, c) must give the same answer for the whole request -- the
head's length or status and its summary, then the chunked body's length,
status and decoded bytes -- and the prefix up to the split point must answer
"need more" or the whole input's error.  And the loops' resume scan
(parsers/scan.py scan_head), fed the prefixes in steps, must never say "need
not ask" where the parser's answer is anything but "need more".  The Python
parser and the scan are instrumented for coverage (that is where most
branches are); the other parsers are compared to the Python one.
"""
import sys

import atheris

with atheris.instrument_imports(include=["kourier_lab.parsers.python", "kourier_lab.parsers.scan"]):
    from kourier_lab import parsers
    from kourier_lab.http.limits import Limits
    from kourier_lab.parsers import BODY_CHUNKED
    import kourier_lab.parsers.python  # noqa: F401  (imported here: instrumented)
    from kourier_lab.parsers.scan import scan_head

LIMITS = Limits(max_request_line=256, max_header_bytes=1024, max_headers=8, max_body=4096)
VARIANTS = {name: parsers.create(name, LIMITS) for name in ("python", "numba", "c")}


def answer(p, data, end):
    n = p.parse_head(data, 0, end)
    if n <= 0:
        return (n,)
    info = tuple(p.info)
    if info[5] != BODY_CHUNKED:
        return (n, info)
    m, body = p.parse_chunked(data, n, end)
    return (n, info, m, None if body is None else bytes(body))


def one_input(raw):
    if len(raw) < 2:
        return
    data = raw[1:]
    split = raw[0] * len(data) // 256
    whole = {name: answer(p, data, len(data)) for name, p in VARIANTS.items()}
    if len(set(whole.values())) != 1:
        raise AssertionError(f"variants differ on {data!r}: {whole}")
    ref = whole["python"]
    for name, p in VARIANTS.items():
        part = answer(p, data, split)
        # a prefix: need more, the same error, or (a complete head before a body)
        # the same head with its body still incomplete or wrong in the same way
        if (part[0] < 0 and part != ref[:1]) or (part[0] > 0 and part[:2] != ref[:2]) or \
                (len(part) > 2 and part[2] != 0 and part[2:] != ref[2:]):
            raise AssertionError(f"{name}: prefix {split} of {data!r} gave {part}, whole {ref}")
    # the resume scan over prefixes growing by `step` bytes, as reads would bring them
    p = VARIANTS["python"]
    step = raw[0] % 5 + 1
    state = (0, 0, 0)
    for end in range(step, len(data) + 1, step):
        decide, nxt = scan_head(data, 0, end, state, LIMITS.max_request_line, LIMITS.max_header_bytes)
        n = p.parse_head(data, 0, end)
        if n != 0:
            if not decide:
                raise AssertionError(f"scan_head hid {n} at {end} bytes of {data!r}")
            break
        state = nxt


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
