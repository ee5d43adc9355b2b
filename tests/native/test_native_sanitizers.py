"""The C parser under AddressSanitizer + UndefinedBehaviorSanitizer.

native/fuzz_parser.c is built with -fsanitize=address,undefined (make -C native)
and run over the parser corpus (the contract and differential suites' inputs)
plus a deterministic, time-bounded mutation pass: every SIMD path must agree
with the scalar one, prefixes must give 0 or the whole answer, and no sanitizer
report is allowed.  Where clang has libFuzzer, the same checks also run as a
coverage-guided libFuzzer target.  Also: the generated tables match
kourier_lab/http/chars.py and parser.c compiles warning-free.
"""
import os
import shutil
import struct
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NATIVE = os.path.join(ROOT, "native")
FUZZ_SECONDS = int(os.environ.get("KOURIER_LAB_FUZZ_SECONDS", "25"))
LIBFUZZER_SECONDS = int(os.environ.get("KOURIER_LAB_LIBFUZZER_SECONDS", "20"))

needs_cc = pytest.mark.skipif(shutil.which(os.environ.get("CC", "gcc")) is None or shutil.which("make") is None,
                              reason="needs a C compiler and make")


def _corpus():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "parsers"))
    import test_parser_contract as contract
    import test_parser_differential as differential
    from kourier_lab import spec
    inputs = list(differential.CORPUS) + list(differential.CHUNKED) + list(differential.TRICKY_LINES)
    # the spec corpus's requests, and its chunked bodies alone (the driver's chunked seeds)
    inputs += [c.request for c in spec.load_request_cases()]
    inputs += [c[1] for c in contract.CHUNKED_OK + contract.CHUNKED_BAD]
    # requests with the tricky lines spliced in, as the framing-rule test builds them
    for line in differential.TRICKY_LINES:
        inputs.append(b"POST /x HTTP/1.1\r\nHost: h\r\n" + line + b"\r\n")
    return inputs


def _make(*args, timeout=300):
    return subprocess.run(["make", "-s", "-C", NATIVE, *args], capture_output=True, text=True, timeout=timeout)


def test_generated_tables_are_current():
    sys.path.insert(0, NATIVE)
    import gen_tables
    assert gen_tables.is_current(), "native/kl_tables.h is stale: run python native/gen_tables.py"


@needs_cc
def test_parser_compiles_without_warnings():
    r = _make("warnings")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning" not in r.stderr, r.stderr


@needs_cc
@pytest.mark.slow
@pytest.mark.timeout(FUZZ_SECONDS + 240)
def test_sanitized_corpus_and_fuzz_pass(tmp_path):
    r = _make("build/fuzz_parser_asan")
    assert r.returncode == 0, "sanitizer build failed:\n" + r.stdout + r.stderr
    corpus = tmp_path / "corpus.bin"
    with open(corpus, "wb") as f:
        for data in _corpus():
            f.write(struct.pack("<I", len(data)) + data)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    run = subprocess.run([os.path.join(NATIVE, "build", "fuzz_parser_asan"), "-s", "20261126",
                          "-t", str(FUZZ_SECONDS), str(corpus)],
                         capture_output=True, text=True, env=env, timeout=FUZZ_SECONDS + 200)
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-4000:]
    for marker in ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer", "MISMATCH"):
        assert marker not in report, report[-4000:]
    assert "no mismatch" in run.stdout
    mutations = int(run.stdout.split(" mutations")[0].rsplit(" ", 1)[1])
    assert mutations > 1000, run.stdout


@pytest.mark.slow
@pytest.mark.timeout(LIBFUZZER_SECONDS + 240)
@pytest.mark.skipif(shutil.which("clang") is None, reason="libFuzzer needs clang (apt: clang libclang-rt-14-dev)")
def test_libfuzzer_pass(tmp_path):
    """The same checks as a coverage-guided libFuzzer target, seeded with the corpus."""
    r = _make("build/fuzz_parser_libfuzzer", "build/fuzz_parser_asan")
    if r.returncode != 0 and "libclang_rt.fuzzer" in r.stderr + r.stdout:
        pytest.skip("clang has no libFuzzer runtime (apt: libclang-rt-14-dev)")
    assert r.returncode == 0, r.stdout + r.stderr
    seeds, work = tmp_path / "seeds", tmp_path / "corpus"
    seeds.mkdir()
    work.mkdir()
    corpus = tmp_path / "corpus.bin"
    with open(corpus, "wb") as f:
        for data in _corpus():
            f.write(struct.pack("<I", len(data)) + data)
    w = subprocess.run([os.path.join(NATIVE, "build", "fuzz_parser_asan"), "-w", str(seeds), str(corpus)],
                       capture_output=True, text=True, timeout=120)
    assert w.returncode == 0, w.stderr
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    run = subprocess.run([os.path.join(NATIVE, "build", "fuzz_parser_libfuzzer"), "-seed=20261126",
                          f"-max_total_time={LIBFUZZER_SECONDS}", "-max_len=4096", "-print_final_stats=1",
                          f"-artifact_prefix={tmp_path}/", str(work), str(seeds)],
                         capture_output=True, text=True, env=env, timeout=LIBFUZZER_SECONDS + 200)
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-4000:]
    for marker in ("ERROR: AddressSanitizer", "runtime error:", "MISMATCH", "deadly signal"):
        assert marker not in report, report[-4000:]
    assert "stat::number_of_executed_units" in report
