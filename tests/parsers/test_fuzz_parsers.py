"""Coverage-guided differential fuzzing of the python, numba and c parsers
(tests/fuzz/parsers_atheris.py, atheris from PyPI), seeded with the spec
corpus's requests at several split points; bounded by KOURIER_LAB_ATHERIS_SECONDS
(default 8).  A disagreement or a crash leaves the input in the output."""
import os
import subprocess
import sys

import pytest

from kourier_lab import spec

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECONDS = int(os.environ.get("KOURIER_LAB_ATHERIS_SECONDS", "8"))


@pytest.mark.timeout(300)
def test_parsers_agree_under_atheris(tmp_path):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for i, case in enumerate(spec.load_request_cases()):
        if len(case.request) <= 4096:
            for split in (0, 128, 255):
                (seeds / f"{i}-{split}").write_bytes(bytes([split]) + case.request)
    run = subprocess.run([sys.executable, os.path.join(HERE, "fuzz", "parsers_atheris.py"), str(seeds),
                          f"-max_total_time={SECONDS}", "-timeout=20", "-max_len=8192",
                          f"-artifact_prefix={tmp_path}/"],
                         capture_output=True, text=True, timeout=280, cwd=tmp_path)
    out = run.stdout[-3000:] + run.stderr[-3000:]
    assert run.returncode == 0, out
    assert "Done" in run.stderr and "cov:" in run.stderr, out     # it really fuzzed
