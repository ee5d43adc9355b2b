"""What the harness runs on a server or client host, over SSH (bench/hosts/remote.py).

Each subcommand is one ordinary command with arguments that prints one JSON
object on stdout; asyncssh carries it (no protocol of ours on the wire).

    python -m kourier_lab.bench.hosts.agent info [--address A]   this host: CPUs, SMT siblings,
                                                           governor, kernel, NICs, commit
    python -m kourier_lab.bench.hosts.agent clock                one time.time() per input line
    python -m kourier_lab.bench.hosts.agent serve --address A --cpus C --log F (--ceiling R | -- CMD {port} ...)
                                                           start a server pinned to C, print
                                                           {"pid", "port", "affinity"}, stop it
                                                           (and its whole tree) when stdin closes
    python -m kourier_lab.bench.hosts.agent ready A PORT PATH    verify it and measure bytes
    python -m kourier_lab.bench.hosts.agent sample --pid P --cpus C --start-at T --max-s D
                                                           the server tree's CPU/RSS from T
                                                           for D seconds (or until a line)
    python -m kourier_lab.bench.hosts.agent load --start-at T --cpus C --out F -- CMD ...
                                                           run a load tool pinned to C from T
    (--start-at stdin: print {"ready": true}, then read T from stdin)

Times are this host's time.time(); the harness converts its own clock to each
host's with the offset it measured (remote.measure_clock).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

SAMPLE_INTERVAL_S = 0.25
COMMIT_FILE = ".kourier-commit"     # written by a shipped tree (it has no .git)


def _read(path: str) -> Optional[str]:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _cpu_list(text: str) -> List[int]:
    out: List[int] = []
    for part in filter(None, text.split(",")):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def _nics(address: Optional[str]) -> List[Dict[str, object]]:
    """Every non-loopback interface: speed (Mb/s, None where the driver says nothing),
    state, IPv4 addresses, and whether it holds `address`."""
    addrs: Dict[str, List[str]] = {}
    try:
        r = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True, timeout=5)
        for link in json.loads(r.stdout or "[]"):
            addrs[link.get("ifname", "")] = [a.get("local") for a in link.get("addr_info", [])]
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    out = []
    for dev in sorted(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else []:
        if dev == "lo":
            continue
        speed = _read(f"/sys/class/net/{dev}/speed")
        try:
            speed_mbps = int(speed) if speed is not None and int(speed) > 0 else None
        except ValueError:
            speed_mbps = None
        out.append({"name": dev, "speed_mbps": speed_mbps,
                    "operstate": _read(f"/sys/class/net/{dev}/operstate"),
                    "driver": os.path.basename(os.path.realpath(
                        f"/sys/class/net/{dev}/device/driver")) if os.path.exists(
                        f"/sys/class/net/{dev}/device/driver") else None,
                    "addresses": addrs.get(dev, []),
                    "holds_address": bool(address and address in addrs.get(dev, []))})
    return out


def host_info(address: Optional[str] = None) -> Dict[str, object]:
    """This host as a row records it."""
    from ..run.machine import cpu_model, git_commit
    from ...paths import repo_root
    usable = sorted(os.sched_getaffinity(0))
    cpus = {}
    for c in usable:
        base = f"/sys/devices/system/cpu/cpu{c}"
        siblings = _read(f"{base}/topology/thread_siblings_list")
        cpus[str(c)] = {
            "siblings": _cpu_list(siblings) if siblings else [c],
            # one physical core = one (package, core id)
            "core": f"{_read(f'{base}/topology/physical_package_id') or 0}:"
                    f"{_read(f'{base}/topology/core_id') or c}",
            "governor": _read(f"{base}/cpufreq/scaling_governor"),
        }
    commit = git_commit()
    if commit == "unknown":
        commit = _read(str(repo_root() / COMMIT_FILE)) or "unknown"
    return {
        "hostname": socket.gethostname(),
        "boot_id": _read("/proc/sys/kernel/random/boot_id"),   # one kernel = one machine
        "netns": os.readlink("/proc/self/ns/net") if os.path.exists("/proc/self/ns/net") else "",
        "kernel": platform.release(),
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count() or 0,
        "usable_cpus": usable,
        "cpus": cpus,
        "nics": _nics(address),
        "git_commit": commit,
        "python_version": platform.python_version(),
        "time": time.time(),
    }


def _pin(cpus):
    return lambda: os.sched_setaffinity(0, set(cpus))


def _stdin_closed(timeout: float) -> bool:
    """True once stdin has a line or is closed (the harness's "stop")."""
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    if ready:
        sys.stdin.readline()
        return True
    return False


def _start_time(arg: str) -> float:
    """--start-at: a time.time() of this host, or "stdin": say ready, then read it.

    The second way keeps the agent's own start-up (a Python interpreter and its
    imports, slow on a busy host) out of the alignment: the harness sends T
    only when every agent is ready."""
    if arg != "stdin":
        return float(arg)
    _emit({"ready": True})
    line = sys.stdin.readline()
    if not line.strip():
        raise SystemExit("no start time on stdin")
    return float(line)


def _sleep_until(t: float) -> bool:
    """Sleep until this host's time.time() reaches t; False if t had already passed."""
    late = time.time() >= t
    while (left := t - time.time()) > 0:
        time.sleep(min(left, 0.05) if left > 0.002 else 0)
    return not late


def _emit(obj: Dict[str, object]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def cmd_serve(args) -> int:
    from ...sampler import descendants, pin_tree
    from ...server.process import NotReady, wait_ready
    from ..run.verify import free_port
    cpus = _cpu_list(args.cpus)
    port = args.port or free_port(args.address)
    if args.ceiling is not None:
        from ..experiment.ceiling import ceiling_command
        cmd = ceiling_command(port, cpus, response=args.ceiling,
                              address=socket.gethostbyname(args.address))  # it takes IPv4
    else:
        cmd = [c.replace("{port}", str(port)) for c in args.command]
    if not cmd:
        _emit({"error": "no server command"})
        return 2
    Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    with open(args.log, "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_pin(cpus), env=env)
    seen = set()

    def stop() -> None:
        if proc.poll() is None:
            seen.update(descendants(proc.pid))
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(args.grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        for pid in seen - {proc.pid}:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass

    signal.signal(signal.SIGTERM, lambda *_: (stop(), sys.exit(0)))
    signal.signal(signal.SIGHUP, lambda *_: (stop(), sys.exit(0)))
    try:
        wait_ready(args.address, port, proc, args.ready_timeout)
    except NotReady as e:
        stop()
        tail = " | ".join(_read(args.log).splitlines()[-3:]) if _read(args.log) else ""
        _emit({"error": f"{e}" + (f"; log: {tail}" if tail else "")})
        return 1
    pids = descendants(proc.pid)
    seen.update(pids)
    pin_tree(pids, cpus)
    affinity = set()
    for pid in pids:
        try:
            affinity |= os.sched_getaffinity(pid)
        except OSError:
            pass
    _emit({"pid": proc.pid, "port": port, "processes": len(pids), "affinity": sorted(affinity),
           "command": cmd})
    # Until the harness says stop (a line) or goes away (EOF: the SSH channel closed).
    while not _stdin_closed(1.0):
        if proc.poll() is not None:
            _emit({"exited": proc.returncode})
            break
    code = proc.poll()
    stop()
    _emit({"stopped": True, "exit_code": code if code is not None else proc.returncode})
    return 0


def cmd_ready(args) -> int:
    from ...server.process import NotReady, wait_ready
    from ..run.verify import VerifyError, measure_bytes, verify_server
    try:
        wait_ready(args.address, args.port, None, args.timeout, args.path)
        verify_server(args.address, args.port, args.path, pipeline=args.pipeline)
        req, resp = measure_bytes(args.address, args.port, args.path, browser=args.browser)
    except (NotReady, VerifyError, OSError) as e:
        _emit({"error": str(e)})
        return 1
    _emit({"request_bytes": req, "response_bytes": resp})
    return 0


def cmd_sample(args) -> int:
    from ...sampler import TreeSampler, cpu_fractions, cpu_ticks
    cpus = _cpu_list(args.cpus)
    on_time = _sleep_until(_start_time(args.start_at))
    sampler = TreeSampler(args.pid)
    ticks0 = cpu_ticks(cpus)
    t0 = time.time()
    sampler.start()
    # the counted window: max_s from T (the load's duration), or until told to stop
    deadline = time.monotonic() + args.max_s
    while (left := deadline - time.monotonic()) > 0:
        if _stdin_closed(min(SAMPLE_INTERVAL_S, left)):
            break
        sampler.sample()
    usage = sampler.finish()
    t1 = time.time()
    frac = cpu_fractions(ticks0, cpu_ticks(cpus))
    alive = os.path.exists(f"/proc/{args.pid}")
    _emit({"start": t0, "end": t1, "on_time": on_time, "cpu_user_s": usage.cpu_user_s,
           "cpu_sys_s": usage.cpu_sys_s, "processes": usage.processes,
           "vmhwm_kb": usage.vmhwm_kb, "vmpeak_kb": usage.vmpeak_kb, "vmrss_kb": usage.vmrss_kb,
           "busy": frac["busy"], "softirq": frac["softirq"], "server_alive": alive})
    return 0


def cmd_load(args) -> int:
    from ...sampler import cpu_fractions, cpu_ticks
    from ..load.wrk import PIPELINE_LUA
    cpus = _cpu_list(args.cpus)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, KOURIER_PIPELINE_LUA=str(PIPELINE_LUA),
               KOURIER_LATENCY_OUT=str(out.with_suffix(".latency")))
    on_time = _sleep_until(_start_time(args.start_at))
    ticks0 = cpu_ticks(cpus)
    t0 = time.time()
    with open(out, "wb") as f:
        proc = subprocess.Popen(args.command, stdin=subprocess.DEVNULL, stdout=f,
                                stderr=subprocess.STDOUT, preexec_fn=_pin(cpus), env=env)
    killed = False
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.time() - t0 > args.deadline_s:
            proc.kill()
            pid, status, ru = os.wait4(proc.pid, 0)
            killed = True
            break
        time.sleep(0.05)
    t1 = time.time()
    frac = cpu_fractions(ticks0, cpu_ticks(cpus))
    _emit({"start": t0, "end": t1, "on_time": on_time, "killed": killed,
           "exit_code": os.waitstatus_to_exitcode(status), "cpu_s": ru.ru_utime + ru.ru_stime,
           "busy": frac["busy"], "softirq": frac["softirq"]})
    return 0


def cmd_clock(args) -> int:
    for _ in sys.stdin:
        sys.stdout.write(f"{time.time():.6f}\n")
        sys.stdout.flush()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kourier_lab.bench.hosts.agent")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("info")
    p.add_argument("--address")
    sub.add_parser("clock")
    p = sub.add_parser("serve")
    p.add_argument("--address", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cpus", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--ceiling", metavar="RESPONSE")
    p.add_argument("--ready-timeout", type=float, default=60.0)
    p.add_argument("--grace", type=float, default=10.0)
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("ready")
    p.add_argument("address")
    p.add_argument("port", type=int)
    p.add_argument("path")
    p.add_argument("--pipeline", type=int, default=16)
    p.add_argument("--browser", action="store_true")
    p.add_argument("--timeout", type=float, default=15.0)
    p = sub.add_parser("sample")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--cpus", required=True)
    p.add_argument("--start-at", required=True, help="this host's time.time(), or stdin")
    p.add_argument("--max-s", type=float, default=3600.0)
    p = sub.add_parser("load")
    p.add_argument("--start-at", required=True, help="this host's time.time(), or stdin")
    p.add_argument("--cpus", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--deadline-s", type=float, default=3600.0)
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    if getattr(args, "command", None) and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if args.cmd == "info":
        _emit(host_info(args.address))
        return 0
    return {"clock": cmd_clock, "serve": cmd_serve, "ready": cmd_ready, "sample": cmd_sample,
            "load": cmd_load}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
