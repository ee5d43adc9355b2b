"""Coverage-guided differential fuzzing of the parsers with atheris.

Run by tests/test_fuzz_parsers.py as a subprocess (atheris ends the process):
    python tests/fuzz/parsers_atheris.py SEED_DIR -max_total_time=8
Each input is a split point byte and request bytes; every parser variant
(python, numba, c) must give the same answer for the whole request -- the
head's length or status and its summary, then the chunked body's length,
status and decoded bytes -- and the prefix up to the split point must answer
"need more" or the whole input's error.  The Python parser is instrumented
for coverage (it is where most branches are); the others are compared to it.
"""
import sys

import atheris

with atheris.instrument_imports(include=["kourier_lab.parsers.python"]):
    from kourier_lab import parsers
    from kourier_lab.http.limits import Limits
    from kourier_lab.parsers import BODY_CHUNKED
    import kourier_lab.parsers.python  # noqa: F401  (imported here: instrumented)

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


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
