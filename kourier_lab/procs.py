"""Every process a command starts, and one way to stop them all.

Servers, peers, the ceiling and load tools run in sessions of their own (so a
terminal's Ctrl-C reaches only the harness, which then stops them in order).
That also means nothing stops them if the harness dies without cleaning up:
every launcher therefore registers what it starts here, and the CLI's one
signal handler turns SIGINT and SIGTERM into an exception that unwinds through
the launchers' own `finally` blocks; `stop_all()` then ends whatever is left.

    proc = procs.register(subprocess.Popen(..., start_new_session=True), "c/c/c")
    ...
    procs.forget(proc)                 # stopped and reaped by its owner
    procs.stop(proc, grace=10, seen=pids)   # or: one process and its tree, forgotten

A process is alive until it exits: a zombie (exited, not yet reaped) is not
(`alive`, `running`); every check here and in the launchers uses that rule.

    with procs.interruptible():        # SIGINT / SIGTERM raise Interrupted (once)
        run_the_command()

    procs.stop_all()                   # SIGTERM each group, then SIGKILL what stays
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Tuple

_lock = threading.Lock()
_registered: Dict[int, Tuple[subprocess.Popen, str]] = {}


class Interrupted(KeyboardInterrupt):
    """The command was asked to stop (SIGINT or SIGTERM); `exit_status` is 128 + the signal."""

    signum_default = signal.SIGINT

    def __init__(self, signum: Optional[int] = None):
        signum = self.signum_default if signum is None else signum
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def exit_status(exc: BaseException) -> int:
    """130 for Ctrl-C (a plain KeyboardInterrupt too), 143 for SIGTERM."""
    return exc.exit_status if isinstance(exc, Interrupted) else 128 + signal.SIGINT


def register(proc: subprocess.Popen, label: str = "") -> subprocess.Popen:
    """Remember a started process (returned unchanged, so a launcher can wrap its Popen)."""
    with _lock:
        _registered[proc.pid] = (proc, label or str(proc.args if not isinstance(proc.args, list)
                                                     else os.path.basename(str(proc.args[0]))))
    return proc


def forget(proc: Optional[subprocess.Popen]) -> None:
    if proc is None:
        return
    with _lock:
        _registered.pop(proc.pid, None)


def registered() -> List[Tuple[subprocess.Popen, str]]:
    with _lock:
        return list(_registered.values())


def running(proc: subprocess.Popen) -> bool:
    """The Popen has not exited (polling reaps it, so it is never left a zombie)."""
    if proc.returncode is not None:
        return False
    try:
        return proc.poll() is None
    except (ChildProcessError, OSError):
        return False


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


def _tree(pid: int) -> List[int]:
    try:
        from .sampler import descendants
        return list(descendants(pid))
    except Exception:
        return [pid]


def alive(pid: int) -> bool:
    """Any process of ours by pid: it exists, may be signalled, and is no zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    try:                                     # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _signal(pid: int, group: bool, sig: int) -> None:
    try:
        (os.killpg if group else os.kill)(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 10.0,
         seen=(), group: bool = True, check: bool = False) -> Optional[int]:
    """Stop one started process and what it started; returns its exit status.

    `sig` to the process (it stops its workers itself); after `grace` seconds
    SIGKILL (its group when `group`, it leads one).  Then SIGKILL whatever is
    still alive of its tree: the pids in `seen` and those found below it now
    (workers that left the group), and the rest of its group.  `check`: raise
    subprocess.TimeoutExpired when it had to be killed."""
    seen = set(seen)
    killed = False
    if running(proc):
        seen.update(_tree(proc.pid))
        group = group and _leads_group(proc.pid)
        _signal(proc.pid, False, sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            killed = True
            _signal(proc.pid, group, signal.SIGKILL)
            proc.wait(5)
    for pid in seen - {proc.pid}:
        if alive(pid):
            _signal(pid, False, signal.SIGKILL)
    if group:
        _signal(proc.pid, True, signal.SIGKILL)     # its own session: ours to clean
    forget(proc)
    if killed and check:
        raise subprocess.TimeoutExpired(proc.args, grace)
    return proc.returncode


def snapshot() -> set:
    """The pids registered now: stop_all(keep=snapshot()) stops only what came after."""
    with _lock:
        return set(_registered)


def stop_all(grace: float = 5.0, keep: Optional[set] = None) -> List[str]:
    """Stop every registered process still running (but those in `keep`), with the
    whole process tree and group it leads: SIGTERM, up to `grace` seconds, then
    SIGKILL.  Returns the labels of those it had to stop."""
    keep = keep or set()
    items = [(p, label) for p, label in registered() if running(p) and p.pid not in keep]
    if not items:
        with _lock:
            for pid in [pid for pid in _registered if pid not in keep]:
                _registered.pop(pid, None)
        return []
    trees = {}
    for proc, _ in items:
        trees[proc.pid] = (_tree(proc.pid), _leads_group(proc.pid))
        _signal(proc.pid, trees[proc.pid][1], signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(running(p) for p, _ in items):
        time.sleep(0.05)
    for proc, _ in items:
        pids, group = trees[proc.pid]
        if running(proc):
            _signal(proc.pid, group, signal.SIGKILL)
        for pid in pids:                      # workers that left the group, if any
            if pid != proc.pid and alive(pid):
                _signal(pid, False, signal.SIGKILL)
        with contextlib.suppress(Exception):
            proc.wait(5)
    with _lock:
        for pid in [pid for pid in _registered if pid not in keep]:
            _registered.pop(pid, None)
    return [label for _, label in items]


def interrupt_thread(thread: threading.Thread, signum: int = signal.SIGINT) -> bool:
    """Raise Interrupted in another thread (the lab panel's Stop button): it
    unwinds that thread's run through the same finally blocks as a Ctrl-C.  An
    interrupt swallowed where it cannot propagate (an at-fork callback) is
    delivered again by the hook below."""
    import ctypes
    if thread.ident is None or not thread.is_alive():
        return False
    _install_thread_hook()
    exc = type("Interrupted", (Interrupted,), {"signum_default": signum, "thread_ident": thread.ident})
    n = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(exc))
    return n == 1


_hook_installed = False


def _install_thread_hook() -> None:
    global _hook_installed
    if _hook_installed:
        return
    previous = sys.unraisablehook

    def hook(u):
        ident = getattr(type(u.exc_value), "thread_ident", None)
        if isinstance(u.exc_value, Interrupted) and ident is not None:
            for t in threading.enumerate():
                if t.ident == ident:
                    threading.Timer(0.02, interrupt_thread, (t,)).start()
            return
        previous(u)

    sys.unraisablehook = hook
    _hook_installed = True


@contextlib.contextmanager
def interruptible(signals=(signal.SIGINT, signal.SIGTERM)):
    """SIGINT and SIGTERM raise Interrupted in the main thread, once: a second
    signal while the command stops its processes does not cut that short.
    Installs the handlers even when SIGINT was ignored (a job started in the
    background by a shell), so a Ctrl-C sent to the process group still stops
    the run.  Outside the main thread it changes nothing."""
    fired: List[int] = []

    def handler(signum, _frame):
        if fired:
            return
        fired.append(signum)
        raise Interrupted(signum)

    def unraisable(u):
        # Raised where Python cannot propagate it (an at-fork callback inside
        # Popen, a __del__): "Exception ignored".  Deliver it again, so that it
        # lands in ordinary code and unwinds the run.
        if isinstance(u.exc_value, Interrupted) and fired:
            fired.clear()                   # from a thread, a moment later: not into this hook
            t = threading.Timer(0.02, os.kill, (os.getpid(), u.exc_value.signum))
            t.daemon = True
            t.start()
            return
        old_hook(u)

    old = {}
    try:
        for sig in signals:
            old[sig] = signal.signal(sig, handler)
    except ValueError:                      # not the main thread
        for sig, h in old.items():
            signal.signal(sig, h)
        yield fired
        return
    old_hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield fired
    finally:
        sys.unraisablehook = old_hook
        for sig, h in old.items():
            signal.signal(sig, h)
