"""Reference servers ("peers") built here from package registries.

Each answers any method on any path with 200 "Hello World!" (text/plain), as
the posts' servers do (catch-all routes), so that a benchmark or compliance
score measures the HTTP implementation, not a router.

    from kourier_lab import peers
    peers.names()                       # ['go', 'hyper', 'nginx', 'uvicorn', 'granian', 'asyncio-httptools']
    peers.available("hyper")            # (True, '') or (False, 'why, and what to install')
    peers.build("hyper")                # cached; raises PeerUnavailable / PeerBuildError
    proc = peers.start("hyper", "127.0.0.1", 8080, workers=2, cpus=[0])
    ...
    peers.stop(proc)

Build artifacts live in a cache directory outside the repository
(``$KOURIER_LAB_CACHE`` or ``~/.cache/kourier_lab``, then ``peers/``), keyed by
a hash of the peer's sources.  Go builds with the standard library only
(GOPROXY=off); hyper builds offline against Debian's crate registry through a
cargo source replacement in a private CARGO_HOME.

What each peer needs (`requirements(name)`):
  go                 apt: golang-go
  hyper              apt: librust-hyper-dev librust-tokio-dev, and cargo unless a cargo/rustc is
                     already on PATH or in ~/.cargo/bin (rustup)
  nginx              apt: nginx
  uvicorn            pip: uvicorn httptools uvloop
  granian            pip: granian
  asyncio-httptools  pip: httptools
"""
import hashlib
import importlib.util
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .. import paths

SRC = Path(__file__).resolve().parent
REPO_ROOT = SRC.parent.parent          # the directory holding the kourier_lab package
DEBIAN_CRATES = Path("/usr/share/cargo/registry")


class PeerError(RuntimeError):
    """Base of the peers' errors; the message says what to do."""


class PeerUnavailable(PeerError):
    """A toolchain or package the peer needs is missing."""


class PeerBuildError(PeerError):
    """The toolchain is there but the build failed; the message holds the tool's output."""


class PeerStartError(PeerError):
    """The peer did not come up (exited, or did not answer the probe in time)."""


@dataclass(frozen=True)
class Requirements:
    apt: Tuple[str, ...] = ()
    pip: Tuple[str, ...] = ()


_REQUIREMENTS: Dict[str, Requirements] = {
    "go": Requirements(apt=("golang-go",)),
    "hyper": Requirements(apt=("librust-hyper-dev", "librust-tokio-dev")),
    "nginx": Requirements(apt=("nginx",)),
    "uvicorn": Requirements(pip=("uvicorn", "httptools", "uvloop")),
    "granian": Requirements(pip=("granian",)),
    "asyncio-httptools": Requirements(pip=("httptools",)),
}
_PIP_MODULES = {"uvicorn": "uvicorn", "httptools": "httptools", "uvloop": "uvloop", "granian": "granian"}


def names() -> List[str]:
    return list(_REQUIREMENTS)


def _check_name(name: str) -> None:
    if name not in _REQUIREMENTS:
        raise ValueError(f"unknown peer {name!r}; choose one of: {', '.join(names())}")


def requirements(name: str) -> Requirements:
    """What the peer needs installed; hyper adds Debian's cargo when no cargo is found."""
    _check_name(name)
    req = _REQUIREMENTS[name]
    if name == "hyper" and not _cargo():
        req = Requirements(apt=req.apt + ("cargo",), pip=req.pip)
    return req


def cache_dir() -> Path:
    return paths.cache_dir() / "peers"


# --- toolchain discovery ------------------------------------------------------------------

def _which(tool: str, extra_dirs: Iterable[str] = ()) -> Optional[str]:
    found = shutil.which(tool)
    if found:
        return found
    for d in extra_dirs:
        p = os.path.join(os.path.expanduser(d), tool)
        if os.access(p, os.X_OK):
            return p
    return None


def _go() -> Optional[str]:
    return _which("go", ("/usr/lib/go/bin", "/usr/local/go/bin"))


def _cargo() -> Optional[str]:
    return _which("cargo", ("~/.cargo/bin",))


def _nginx() -> Optional[str]:
    return _which("nginx", ("/usr/sbin",))


def _debian_crate(prefix: str) -> Optional[Path]:
    if not DEBIAN_CRATES.is_dir():
        return None
    found = sorted(DEBIAN_CRATES.glob(prefix + "*"))
    return found[-1] if found else None


def available(name: str) -> Tuple[bool, str]:
    """(True, '') when the peer's toolchain/packages are present, else (False, what is missing)."""
    req = requirements(name)
    missing_pip = [p for p in req.pip if importlib.util.find_spec(_PIP_MODULES[p]) is None]
    if missing_pip:
        return False, f"Python packages missing: {' '.join(missing_pip)} (pip install {' '.join(missing_pip)})"
    if name == "go" and not _go():
        return False, "Go toolchain missing: no 'go' on PATH (apt-get install -y golang-go)"
    if name == "nginx" and not _nginx():
        return False, "nginx missing (apt-get install -y nginx)"
    if name == "hyper":
        if not _cargo():
            return False, "no cargo on PATH or in ~/.cargo/bin (rustup, or apt-get install -y cargo)"
        missing = [pkg for pkg, crate in (("librust-hyper-dev", "hyper-0.14"), ("librust-tokio-dev", "tokio-1."))
                   if _debian_crate(crate) is None]
        if missing:
            return False, (f"Debian crates missing from {DEBIAN_CRATES}: apt-get install -y {' '.join(missing)}")
    return True, ""


def install(name: str) -> None:
    """Install what the peer needs with apt-get / pip (needs root for apt)."""
    req = requirements(name)
    if req.apt:
        apt = shutil.which("apt-get")
        if not apt:
            raise PeerUnavailable(f"{name}: no apt-get here; install {' '.join(req.apt)} by hand")
        cmd = [apt, "install", "-y", "-o", "DPkg::Lock::Timeout=600", *req.apt]
        if os.geteuid() != 0:
            sudo = shutil.which("sudo")
            if not sudo:
                raise PeerUnavailable(f"{name}: apt-get needs root; run: sudo {' '.join(cmd)}")
            cmd = [sudo, "-n", *cmd]
        r = subprocess.run(cmd, capture_output=True, text=True,
                           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        if r.returncode != 0:
            raise PeerUnavailable(f"{name}: '{' '.join(cmd)}' failed:\n{_tail(r.stdout + r.stderr)}")
    if req.pip:
        cmd = [sys.executable, "-m", "pip", "install", *req.pip]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise PeerUnavailable(f"{name}: '{' '.join(cmd)}' failed:\n{_tail(r.stdout + r.stderr)}")
        importlib.invalidate_caches()


# --- building -----------------------------------------------------------------------------

def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _source_hash(files: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(str(f.relative_to(SRC)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _copy_sources(src: Path, dst: Path, files: Sequence[Path]) -> None:
    for f in files:
        target = dst / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)


def binary_path(name: str) -> Optional[Path]:
    """Where the built binary of a compiled peer (go, hyper) is or will be; None for others."""
    _check_name(name)
    if name == "go":
        files = [SRC / "go" / "main.go", SRC / "go" / "go.mod"]
        return cache_dir() / "go" / _source_hash(files) / "peer-go"
    if name == "hyper":
        files = [SRC / "hyper" / "Cargo.toml", SRC / "hyper" / "src" / "main.rs"]
        return cache_dir() / "hyper" / _source_hash(files) / "peer-hyper"
    return None


def _run_build(cmd, cwd, env, what) -> None:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise PeerBuildError(f"{what}: '{' '.join(map(str, cmd))}' failed (exit {r.returncode}):\n"
                             f"{_tail(r.stdout + r.stderr, 40)}")


def _build_go(out: Path) -> None:
    go = _go()
    src_files = [SRC / "go" / "main.go", SRC / "go" / "go.mod"]
    work = out.parent / "src"
    if work.exists():
        shutil.rmtree(work)
    _copy_sources(SRC / "go", work, src_files)
    cache = cache_dir() / "go"
    env = dict(os.environ, GOFLAGS="-mod=mod", GOPROXY="off", GOSUMDB="off", GO111MODULE="on",
               GOCACHE=str(cache / "gocache"), GOPATH=str(cache / "gopath"), CGO_ENABLED="0",
               GOTOOLCHAIN="local")
    _run_build([go, "build", "-trimpath", "-o", str(out), "."], work, env, "go build")


CARGO_CONFIG = f"""# Written by kourier_lab.peers: build offline from Debian's crate registry.
[source.crates-io]
replace-with = "debian"

[source.debian]
directory = "{DEBIAN_CRATES}"

[net]
offline = true
"""


def _build_hyper(out: Path) -> None:
    cargo = _cargo()
    src_files = [SRC / "hyper" / "Cargo.toml", SRC / "hyper" / "src" / "main.rs"]
    work = out.parent / "src"
    if work.exists():
        shutil.rmtree(work)
    _copy_sources(SRC / "hyper", work, src_files)
    cargo_home = cache_dir() / "hyper" / "cargo-home"
    cargo_home.mkdir(parents=True, exist_ok=True)
    (cargo_home / "config.toml").write_text(CARGO_CONFIG)
    env = dict(os.environ, CARGO_HOME=str(cargo_home),
               CARGO_TARGET_DIR=str(cache_dir() / "hyper" / "target"))
    # rustup's cargo finds its rustc through PATH / RUSTUP_HOME; keep ~/.cargo/bin reachable.
    env["PATH"] = os.pathsep.join([os.path.dirname(cargo), env.get("PATH", "")])
    if "RUSTUP_HOME" not in env and os.path.isdir(os.path.expanduser("~/.rustup")):
        env["RUSTUP_HOME"] = os.path.expanduser("~/.rustup")
    _run_build([cargo, "build", "--release", "--offline", "--quiet"], work, env,
               "cargo build (hyper against Debian's crates)")
    built = cache_dir() / "hyper" / "target" / "release" / "peer-hyper"
    shutil.copy2(built, out)


def build(name: str, install_missing: bool = False) -> Optional[Path]:
    """Make the peer runnable; returns the binary for go/hyper (cached by source hash).

    Raises PeerUnavailable (saying what to install) or PeerBuildError (with the
    tool's output).  install_missing: try apt-get / pip first.
    """
    ok, why = available(name)
    if not ok and install_missing:
        install(name)
        ok, why = available(name)
    if not ok:
        raise PeerUnavailable(f"peer {name!r} cannot be built: {why}")
    out = binary_path(name)
    if out is None or out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    (_build_go if name == "go" else _build_hyper)(tmp)
    os.replace(tmp, out)
    return out


# --- running ------------------------------------------------------------------------------

def _nginx_conf(rundir: Path, host: str, port: int, workers: int) -> Path:
    template = string.Template((SRC / "nginx" / "nginx.conf.template").read_text())
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    conf = rundir / "nginx.conf"
    conf.write_text(template.substitute(workers=workers, rundir=str(rundir), listen=listen))
    return conf


def command(name: str, host: str, port: int, workers: int, rundir: Path) -> Tuple[List[str], Dict[str, str]]:
    """The argv and environment that start the peer (after build())."""
    _check_name(name)
    env = dict(os.environ)
    py_path = [str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    if name == "go":
        return [str(binary_path("go")), "-addr", f"{host}:{port}", "-workers", str(workers)], env
    if name == "hyper":
        return [str(binary_path("hyper")), "--addr", f"{host}:{port}", "--workers", str(workers)], env
    if name == "nginx":
        conf = _nginx_conf(rundir, host, port, workers)
        return [_nginx(), "-p", str(rundir), "-c", str(conf), "-e", str(rundir / "error.log")], env
    env["PYTHONPATH"] = os.pathsep.join(py_path)
    if name == "uvicorn":
        return [sys.executable, "-m", "uvicorn", "kourier_lab.peers.apps:asgi_app", "--host", host,
                "--port", str(port), "--workers", str(workers), "--loop", "uvloop", "--http", "httptools",
                "--lifespan", "off", "--no-access-log", "--log-level", "warning"], env
    if name == "granian":
        return [sys.executable, "-m", "granian", "--interface", "rsgi", "--host", host, "--port", str(port),
                "--workers", str(workers), "--runtime-threads", "1", "--http", "1", "--no-ws",
                "--log-level", "warning", "kourier_lab.peers.apps:rsgi_app"], env
    return [sys.executable, "-m", "kourier_lab.peers.asyncio_httptools", "--host", host, "--port", str(port),
            "--workers", str(workers)], env


def _answers(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n" % (host.encode(), port))
            data = b""
            while len(data) < 12:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data.startswith(b"HTTP/1.1 200") or data.startswith(b"HTTP/1.0 200")
    except OSError:
        return False


def _pidfile(name: str, port: int) -> Path:
    return cache_dir() / "run" / f"{name}-{port}.pid"


def start(name: str, host: str, port: int, workers: int, cpus: Optional[Iterable[int]] = None,
          timeout: float = 60.0) -> subprocess.Popen:
    """Start the peer in its own process group and return once it answers a GET.

    cpus: pin the peer (all its processes and threads) to these CPUs with taskset.
    The Popen carries .peer_name, .rundir and .log_path.
    """
    _check_name(name)
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if _answers(host, port, timeout=0.3):
        raise PeerStartError(f"something already answers on {host}:{port}; choose another port")
    build(name)
    rundir = cache_dir() / "run" / f"{name}-{port}"
    if rundir.exists():
        shutil.rmtree(rundir, ignore_errors=True)
    rundir.mkdir(parents=True)
    cmd, env = command(name, host, port, workers, rundir)
    if cpus is not None:
        cpu_list = sorted(set(int(c) for c in cpus))
        if not cpu_list:
            raise ValueError("cpus is empty")
        taskset = shutil.which("taskset")
        if not taskset:
            raise PeerUnavailable("taskset missing (apt-get install -y util-linux) - needed to pin peers")
        cmd = [taskset, "-c", ",".join(map(str, cpu_list))] + cmd
    log_path = rundir / "peer.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=rundir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    proc.peer_name, proc.rundir, proc.log_path = name, rundir, log_path
    from .. import procs
    procs.register(proc, name)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise PeerStartError(f"peer {name} exited with code {proc.returncode} before answering:\n"
                                 f"{_tail(log_path.read_text(errors='replace'))}")
        if _answers(host, port):
            break
        if time.monotonic() > deadline:
            stop(proc)
            raise PeerStartError(f"peer {name} did not answer GET on {host}:{port} within {timeout:.0f} s:\n"
                                 f"{_tail(log_path.read_text(errors='replace'))}")
        time.sleep(0.1)
    _pidfile(name, port).write_text(str(proc.pid))
    return proc


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _stop_group(pgid: int, leader: Optional[subprocess.Popen], timeout: float) -> None:
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if leader is not None and leader.poll() is None:
            time.sleep(0.05)
            continue
        if not _group_alive(pgid):
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if leader is not None:
        leader.wait()


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM the peer's process group, wait, then SIGKILL whatever is left."""
    if proc.returncode is None or _group_alive(proc.pid):
        _stop_group(proc.pid, proc, timeout)
    proc.wait()
    from .. import procs
    procs.forget(proc)
    name = getattr(proc, "peer_name", None)
    rundir = getattr(proc, "rundir", None)
    if name and rundir:
        port = rundir.name.rsplit("-", 1)[-1]
        pf = _pidfile(name, int(port)) if port.isdigit() else None
        if pf and pf.exists() and pf.read_text().strip() == str(proc.pid):
            pf.unlink()


def stop_recorded(name: str, port: Optional[int] = None, timeout: float = 10.0) -> List[int]:
    """Stop peers started by an earlier `kourier-lab peers start` (by their pid files)."""
    _check_name(name)
    stopped = []
    pattern = f"{name}-{port}.pid" if port else f"{name}-*.pid"
    for pf in sorted((cache_dir() / "run").glob(pattern)):
        try:
            pgid = int(pf.read_text().strip())
        except ValueError:
            pf.unlink()
            continue
        if _group_alive(pgid):
            _stop_group(pgid, None, timeout)
            stopped.append(pgid)
        pf.unlink()
    return stopped
