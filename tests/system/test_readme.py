"""The README's examples work as written.

Every `kourier-lab ...` line of a ```sh block is expanded the way a reader
reads its synopsis ([optional] parts left out and put in, a|b alternatives
each taken, NAME / PORT / N filled in) and parsed by the real CLI: an option
the README names that the CLI does not have fails here.  The short ones are
also run: the tour's serve + curl (and --app demo, and the README's own app
snippet saved as a module), peers list, compliance against that server, the
micro timers in quick mode, report.  `make bench` / `make test` and the long
bench, memory and soak runs are parsed only (CI runs `make test` itself)."""
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from kourier_lab.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PLACEHOLDERS = {"NAME": "go", "PORT": "3275", "N": "1", "STACK": "c/c/c"}


def blocks(lang: str):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def sh_lines():
    """Shell lines of the README (continuations joined, comments dropped)."""
    out = []
    for block in blocks("sh"):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                out.append(re.sub(r"\s+", " ", line))
    return out


def _options(text: str):
    """[a] -> with and without; inner a|b alternatives -> each."""
    m = re.search(r"\[([^\[\]]*)\]", text)
    if not m:
        return [text]
    inner = m.group(1)
    alts = [inner] if " | " in inner else _alternatives(inner)
    return [v for a in [""] + alts for v in _options(text[:m.start()] + a + text[m.end():])]


def _alternatives(text: str):
    words = text.split(" ")
    choices = [w.split("|") if "|" in w and not w.startswith("-") or re.fullmatch(r"[\w.,-]+(\|[\w.,-]+)+", w)
               else [w] for w in words]
    return [" ".join(c) for c in itertools.product(*choices)]


def expand(line: str):
    """Concrete argv lists (without the program) of one synopsis line."""
    line = re.sub(r"^(\.venv/bin/)?kourier-lab ", "", line)
    head, _, rest = line.partition(" ")
    forms = [f"{head} {f.strip()}" for f in rest.split(" | ")] if " | " in rest else [line]
    out = []
    for form in forms:
        for variant in _options(form):
            for concrete in _alternatives(variant):
                words = [PLACEHOLDERS.get(w, w) for w in concrete.split()]
                out.append(words)
    return out


CLI_LINES = [ln for ln in sh_lines() if re.match(r"^(\.venv/bin/)?kourier-lab ", ln)]


def test_the_readme_has_the_examples_this_test_reads():
    assert any(ln.startswith("make bench") for ln in sh_lines())
    assert any(" serve " in f" {ln} " for ln in CLI_LINES) and any("bench" in ln for ln in CLI_LINES)
    assert "make lab" in README.split("## A short tour")[0]       # the first screen says how to open them


@pytest.mark.parametrize("line", CLI_LINES)
def test_every_cli_example_parses_as_written(line):
    parser = build_parser()
    for argv in expand(line):
        try:
            parser.parse_args(argv)
        except SystemExit as e:
            pytest.fail(f"README: `kourier-lab {' '.join(argv)}` is rejected by the CLI (exit {e.code})")
        for word in argv:                     # files the examples name exist
            if word.startswith(("experiments/", "notebooks/")):
                assert (ROOT / word).exists(), f"README names {word}, which does not exist"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kourier_lab() -> list:
    exe = Path(sys.executable).with_name("kourier-lab")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "kourier_lab.cli"]


def _env(**extra):
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *extra.pop("path", []),
                                                         os.environ.get("PYTHONPATH", "")]), **extra)


class Served:
    def __init__(self, argv, env):
        self.port = _free_port()
        argv = [a if a != "3275" else str(self.port) for a in argv]
        self.proc = subprocess.Popen(_kourier_lab() + argv, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"serve did not start: {self.proc.stderr.read().decode()[-1500:]}")
                time.sleep(0.1)

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
            return r.status, r.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _tour_serve_line():
    return next(ln for ln in CLI_LINES if " serve -a 127.0.0.1 -p 3275" in f" {ln}")


def test_the_tour_serves_hello_and_compliance_runs_against_it(tmp_path):
    argv = expand(_tour_serve_line())[0]                    # as written, optional parts left out
    srv = Served(argv, _env())
    try:
        curl = next(ln for ln in sh_lines() if ln.startswith("curl "))
        assert "/hello" in curl
        status, body = srv.get("/hello")
        assert status == 200 and body == b"Hello World!"
        if shutil.which("curl"):
            r = subprocess.run(curl.replace("3275", str(srv.port)).split(), capture_output=True, timeout=20)
            assert r.returncode == 0 and b"200 OK" in r.stdout and b"Hello World!" in r.stdout
        line = next(ln for ln in CLI_LINES if ln.startswith("kourier-lab compliance"))
        argv = [a.replace("3275", str(srv.port)) for a in expand(line)[0]] + ["--quick"]
        r = subprocess.run(_kourier_lab() + argv, capture_output=True, text=True, env=_env(), timeout=120)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    finally:
        srv.stop()


def test_app_demo_and_the_readme_s_own_app(tmp_path):
    assert "--app demo" in README
    srv = Served(["serve", "-a", "127.0.0.1", "-p", "3275", "--app", "demo"], _env())
    try:
        status, body = srv.get("/json")
        assert status == 200 and json.loads(body)["path"] == "/json"
    finally:
        srv.stop()
    snippet = next(b for b in blocks("python") if "App()" in b)
    (tmp_path / "myapp.py").write_text(textwrap.dedent(snippet))
    srv = Served(["serve", "-a", "127.0.0.1", "-p", "3275", "--app", "myapp:app"], _env(path=[str(tmp_path)]))
    try:
        assert srv.get("/hello") == (200, b"Hello World!")
        status, body = srv.get("/users?x=1")
        assert status == 200 and json.loads(body) == {"path": "/users", "query": "x=1"}
    finally:
        srv.stop()


@pytest.mark.parametrize("argv", [["peers", "list"], ["micro", "timers", "--quick"], ["report"]])
def test_short_commands_run_as_written(argv, tmp_path):
    assert any(ln.startswith("kourier-lab " + argv[0]) and argv[1:2] == [] or
               ln.startswith("kourier-lab " + argv[0]) and argv[1] in ln for ln in CLI_LINES)
    env = _env(KOURIER_LAB_RESULTS=str(tmp_path / "results"), KOURIER_LAB_FIGURES=str(tmp_path / "figures"))
    if argv[0] == "micro":
        argv = argv + ["--no-save"]           # a test's figures are not results
    r = subprocess.run(_kourier_lab() + argv, capture_output=True, text=True, env=env, timeout=240,
                       cwd=str(tmp_path))
    if argv == ["report"]:        # no stored rows here: one clear line naming what to run
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "kourier-lab bench" in r.stderr
    else:
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]

