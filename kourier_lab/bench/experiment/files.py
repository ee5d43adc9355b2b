"""Experiment specs: `experiments/*.toml` -> Experiment.

    name = "quick"                       # default: the file's stem
    description = "..."
    profile = "auto"                     # auto | ryzen-5-1600
    repetitions = 3                      # counted runs per server and shape
    duration = 3                         # seconds per counted run (wrk: whole seconds)
    warmup = 1                           # seconds of uncounted load first (0: none)
    pause = 1.0                          # seconds between runs
    timeout = 2                          # wrk --timeout, whole seconds
    request_timeout = 20                 # handed to our server (the post's values)
    idle_timeout = 60
    stacks = ["python/python/python", "c/c/c"]   # loop/parser/buffer, or "all" / "diagonal";
                                         # a part may be a user's variant: "c/naive.py:Naive/c"
                                         # (a path relative to this file), "python/pkg.mod:P/python"
    peers = ["hyper", "go"]                      # peer names, or "all"
    shapes = ["distinct", "pipelined"]           # distinct | real | api | pipelined | keepalive |
                                         # browser | connections | rate (SHAPE_DEFAULTS below)
    head_memo = false                    # the stacks' head memo (parsers/memo.py): false (default),
                                         # true, or [false, true] = an axis (each stack both ways)
    fold_runs = false                    # the stacks' folding of equal consecutive requests into
                                         # one answer (serve --fold-runs): false (default), true,
                                         # or [false, true]; rows named <stack>+fold
    uring_features = ["default"]         # the uring stacks' io_uring switches (serve --uring-features),
                                         # an axis: e.g. ["default", "no-multishot", "fixed-files"];
                                         # rows named <stack>~<setting> but for "default"
    ceilings = ["epoll"]                 # the ceilings: "epoll" (native/ceiling.c, always) and
                                         # "uring" (its io_uring mode, row "ceiling-uring"; skipped
                                         # with the reason where io_uring cannot run); each row's
                                         # of_ceiling is to the ceiling of its own API
    response = "default"                 # the benchmark app's response (and the ceiling's):
                                         # "default" (135 bytes) or "kourier" (the posts' 105)
    load_tool = "kourier-lab"            # kourier-lab (native/loadgen.c, the default) | wrk |
                                         # h2load; under wrk the rate shape uses h2load
    load_io = "uring"                    # kourier-lab's kernel interface: epoll | uring (default:
                                         # io_uring for the closed loop where it runs, epoll else)

    [hosts]                              # optional: server and load tools on other machines
    server = "ssh://user@host:22"        # over SSH (bench/hosts/hosts_table.py has every key); without
    clients = ["ssh://user@client1"]     # [hosts] everything runs on this machine

    [shape.pipelined]                    # optional per-shape overrides
    connections = 64                     # or a list, e.g. [64, 512, 4096]: the shape once per count
    pipeline = 256
    duration = 5
    path = "/hello"
    load_tool = "h2load"                 # per-shape override

    [shape.rate]                         # the open-loop sweep (h2load, or kourier-lab)
    connections = 64
    rate_steps = 6                       # offered rates from 10 % to 150 % of the closed-loop
                                         # throughput measured first, geometric
    rates = [10000, 50000]               # or explicit offered requests/s (then no closed-loop probe)

The shapes distinct, real and api send requests from a corpus (bench/experiment/corpora.py,
data/corpora/<name>.corpus): every request of a write differs.  api is answered
by the demo app's Python handlers (servers run with --app demo), which the
ceiling and the peers cannot run: their api rows are skipped rows saying so.

The ceiling is always measured (it is the reference every row is compared to).
Every problem is reported as one SpecError naming the file and the key.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ModuleNotFoundError:  # pragma: no cover - depends on the interpreter
        tomllib = None

from ...registry import normalize, split_stack
from ...server.config import parse_uring_features
from ..hosts.hosts_table import HostsError, HostsSpec, parse_hosts
from .split import PROFILES


class SpecError(ValueError):
    """A bad experiment file; the message is one line naming the problem."""


SHAPE_DEFAULTS: Dict[str, Dict[str, Any]] = {
    # The post's load with every request different (a corpus of minimal heads):
    # what a server pays when it cannot fold or memoise identical requests.
    # 64 connections as quick.toml's pipelined: a Python stack paying for every request
    # still answers a batch well within wrk's 2 s timeout on one server CPU.
    "distinct": {"connections": 64, "pipeline": 256, "browser": False, "corpus": "distinct"},
    # Browser-like requests, each with its own path, query and header set.
    "real": {"connections": 64, "pipeline": 16, "browser": False, "corpus": "real"},
    # GETs and JSON POSTs answered by Python handlers (the demo app), not a static route.
    "api": {"connections": 64, "pipeline": 16, "browser": False, "corpus": "api", "app": "demo"},
    # The post's load: many connections, 256 identical requests per write.
    "pipelined": {"connections": 512, "pipeline": 256, "browser": False},
    # Plain keep-alive: one request in flight per connection.
    "keepalive": {"connections": 64, "pipeline": 1, "browser": False},
    # Browser-like requests (~10 headers), moderately pipelined.
    "browser": {"connections": 64, "pipeline": 16, "browser": True},
    # As many connections as the box allows (memory), one request at a time.
    "connections": {"connections": "max", "pipeline": 1, "browser": False},
    # Open loop: requests offered at fixed rates (h2load), latency from each
    # request's intended send time, up to and past saturation.
    "rate": {"connections": 64, "pipeline": 1, "browser": False},
}
LOAD_TOOLS = ("wrk", "h2load", "kourier-lab")
DEFAULT_LOAD_TOOL = "kourier-lab"      # native/loadgen.c (bench/load/kourier.py)
RESPONSES = ("default", "kourier")
# "max" connections is capped here; run/measure.py lowers it further to what the
# file-descriptor limit and the ephemeral port range allow.
MAX_CONNECTIONS_DEFAULT = 10000

_TOP_KEYS = {"name", "description", "profile", "repetitions", "duration", "warmup", "pause",
             "timeout", "request_timeout", "idle_timeout", "stacks", "peers", "shapes", "shape",
             "head_memo", "fold_runs", "uring_features", "ceilings", "response", "load_tool", "load_io", "hosts", "kind"}
# what an experiment file is ("kind"); the memory kind is kourier_lab/stress/memory.py's
KINDS = {"bench": "kourier-lab bench", "memory": "kourier-lab memory"}


def check_kind(data: Dict[str, Any], path: Optional[str], mine: str, looks_other: bool) -> None:
    """One clear line when a file of another kind is handed to `mine`'s command.
    The kind is the file's `kind` key; a file without one is taken to be of the
    other kind when it has that kind's keys and none of ours (`looks_other`)."""
    where = _where(path)
    kind = data.get("kind", mine if not looks_other else None)
    if kind is None:
        kind = next(k for k in KINDS if k != mine)
    if kind not in KINDS:
        raise SpecError(f"{where}: kind must be one of {', '.join(map(repr, KINDS))}, not {kind!r}")
    if kind != mine:
        raise SpecError(f"{where}: this is a {kind} experiment: run `{KINDS[kind]} {path or '<file>'}`")
_SHAPE_KEYS = {"connections", "pipeline", "duration", "path", "timeout", "load_tool",
               "rate_steps", "rates"}
_STACK_RE = re.compile(r"^[a-z0-9_-]+/[a-z0-9_-]+/[a-z0-9_-]+$")
STACK_GROUPS = ("all", "diagonal")


@dataclass(frozen=True)
class Shape:
    name: str
    connections: Union[int, str]       # an int, or "max"
    pipeline: int
    browser: bool
    duration_s: int
    timeout_s: int
    path: str = "/hello"
    load_tool: str = "wrk"
    rate_steps: int = 6                # rate shape: offered rates in the sweep
    rates: tuple = ()                  # rate shape: explicit offered rates (requests/s)
    corpus: Optional[str] = None       # the requests come from data/corpora/<corpus>.corpus
    app: str = "default"               # the stacks' app: "default" (benchmark) or "demo"


@dataclass(frozen=True)
class Experiment:
    name: str
    path: Optional[str]
    description: str
    profile: str
    repetitions: int
    duration_s: int
    warmup_s: int
    pause_s: float
    timeout_s: int
    request_timeout_s: float
    idle_timeout_s: float
    stacks: List[str]
    peers: List[str]
    shapes: List[Shape]
    quick: bool = False
    head_memo: tuple = (False,)        # the memo settings every stack runs with (an axis)
    fold_runs: tuple = (False,)        # the run-folding settings (an axis, like head_memo)
    uring_features: tuple = ("default",)  # the uring stacks' --uring-features settings (an axis)
    ceilings: tuple = ("epoll",)       # the ceilings measured: "epoll" (always), "uring" (`ceiling --uring`)
    response: str = "default"
    hosts: Optional[HostsSpec] = None  # None: this machine only (bench/hosts/hosts_table.py)
    load_io: Optional[str] = None      # kourier-lab's epoll | uring (None: its default, load_io in rows)

    def quickened(self) -> "Experiment":
        """The same matrix with the shortest runs that still mean something:
        1 s runs, 2 repetitions, 1 s warm-up, short pauses, capped connections."""
        # a shape run at several connection counts keeps its first one only
        first = {}
        for s in self.shapes:
            first.setdefault(s.name, s)
        shapes = [dataclasses.replace(
            s, duration_s=1, rate_steps=min(s.rate_steps, 3), rates=s.rates[:3],
            connections=(min(1000, MAX_CONNECTIONS_DEFAULT) if s.connections == "max"
                         else s.connections)) for s in first.values()]
        return dataclasses.replace(self, repetitions=min(self.repetitions, 2), duration_s=1,
                                   warmup_s=min(self.warmup_s, 1), pause_s=min(self.pause_s, 0.2),
                                   shapes=shapes, quick=True)


def _where(path: Optional[str]) -> str:
    return path if path else "experiment"


def _int(where, key, value, lo=None, hi=None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{where}: {key} must be an integer, not {value!r}")
    if lo is not None and value < lo:
        raise SpecError(f"{where}: {key} must be >= {lo}, not {value}")
    if hi is not None and value > hi:
        raise SpecError(f"{where}: {key} must be <= {hi}, not {value}")
    return value


def _number(where, key, value, lo=0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{where}: {key} must be a number, not {value!r}")
    if value < lo:
        raise SpecError(f"{where}: {key} must be >= {lo:g}, not {value}")
    return float(value)


def _str_list(where, key, value) -> List[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(f"{where}: {key} must be a list of strings, not {value!r}")
    return list(dict.fromkeys(value))       # keep order, drop repeats


def _bool_axis(where, key, value) -> tuple:
    """A switch of the stacks: true, false, or a list of them (an axis)."""
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, bool) for v in values):
        raise SpecError(f"{where}: {key} must be true, false or a list of them "
                        f"(e.g. [false, true]), not {value!r}")
    return tuple(dict.fromkeys(values))


def parse_experiment(data: Dict[str, Any], path: Optional[str] = None) -> Experiment:
    """Validate a decoded TOML table; raise SpecError on the first problem."""
    where = _where(path)
    if not isinstance(data, dict):
        raise SpecError(f"{where}: the experiment must be a table")
    check_kind(data, path, "bench", looks_other="steps" in data and "shapes" not in data)
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise SpecError(f"{where}: unknown key {unknown[0]!r} "
                        f"(known: {', '.join(sorted(_TOP_KEYS))})")
    name = data.get("name", Path(path).stem if path else "experiment")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise SpecError(f"{where}: name must be letters, digits, '_', '.' or '-', not {name!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise SpecError(f"{where}: description must be a string")
    profile = data.get("profile", "auto")
    if profile not in PROFILES:
        raise SpecError(f"{where}: unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    prof = PROFILES[profile]
    repetitions = _int(where, "repetitions", data.get("repetitions", 3), 1, 1000)
    duration = _int(where, "duration", data.get("duration", prof.duration_s), 1, 3600)
    warmup = _int(where, "warmup", data.get("warmup", 1), 0, 600)
    pause = _number(where, "pause", data.get("pause", 1.0))
    timeout = _int(where, "timeout", data.get("timeout", 2), 1, 3600)
    request_timeout = _number(where, "request_timeout", data.get("request_timeout", 20), 0.001)
    idle_timeout = _number(where, "idle_timeout", data.get("idle_timeout", 60), 0.001)

    stacks = _str_list(where, "stacks", data.get("stacks", []))
    for i, s in enumerate(stacks):
        if s in STACK_GROUPS or _STACK_RE.match(s):
            continue
        parts = split_stack(s)
        if parts is None:
            raise SpecError(f"{where}: stack {s!r} is not loop/parser/buffer (e.g. \"c/c/c\", "
                            f"\"c/my_parser.py:MyParser/c\") nor one of {', '.join(STACK_GROUPS)}")
        # a user's variant by file: relative to the experiment file, then absolute,
        # so that it means the same in the server process
        base = str(Path(path).resolve().parent) if path else None
        stacks[i] = "/".join(normalize(part, base) for part in parts)
    peers = _str_list(where, "peers", data.get("peers", []))
    for p in peers:
        if not re.fullmatch(r"[a-z0-9_-]+", p):
            raise SpecError(f"{where}: peer name {p!r} is not a peer name (e.g. \"hyper\")")

    head_memo = _bool_axis(where, "head_memo", data.get("head_memo", False))
    fold_runs = _bool_axis(where, "fold_runs", data.get("fold_runs", False))
    uring_features = _str_list(where, "uring_features", data.get("uring_features", ["default"]))
    for setting in uring_features:
        try:
            parse_uring_features(setting)
        except ValueError as e:
            raise SpecError(f"{where}: uring_features {setting!r}: {e}") from None
    ceilings = _str_list(where, "ceilings", data.get("ceilings", ["epoll"]))
    for api in ceilings:
        if api not in ("epoll", "uring"):
            raise SpecError(f"{where}: ceilings: {api!r} is not epoll or uring")
    ceilings = tuple(dict.fromkeys(["epoll", *ceilings]))
    response = data.get("response", "default")
    if response not in RESPONSES:
        raise SpecError(f"{where}: response must be one of {', '.join(RESPONSES)}, "
                        f"not {response!r}")
    # the lab's own load generator by default; wrk with [hosts] (it runs on the client hosts)
    load_tool = data.get("load_tool", "wrk" if "hosts" in data else DEFAULT_LOAD_TOOL)
    if load_tool not in LOAD_TOOLS:
        raise SpecError(f"{where}: load_tool must be one of {', '.join(LOAD_TOOLS)}, "
                        f"not {load_tool!r}")
    load_io = data.get("load_io")
    if load_io is not None and load_io not in ("epoll", "uring"):
        raise SpecError(f"{where}: load_io must be epoll or uring, not {load_io!r}")

    shape_names = _str_list(where, "shapes", data.get("shapes", ["pipelined"]))
    if not shape_names:
        raise SpecError(f"{where}: shapes is empty (choose from: {', '.join(SHAPE_DEFAULTS)})")
    overrides = data.get("shape", {})
    if not isinstance(overrides, dict):
        raise SpecError(f"{where}: [shape] must be a table of tables, e.g. [shape.pipelined]")
    for sname in overrides:
        if sname not in shape_names:
            raise SpecError(f"{where}: [shape.{sname}] configures a shape that is not in "
                            f"shapes = {shape_names}")
    shapes = []
    for sname in shape_names:
        if sname not in SHAPE_DEFAULTS:
            raise SpecError(f"{where}: unknown shape {sname!r} "
                            f"(known: {', '.join(SHAPE_DEFAULTS)})")
        over = overrides.get(sname, {})
        if not isinstance(over, dict):
            raise SpecError(f"{where}: shape.{sname} must be a table")
        bad = sorted(set(over) - _SHAPE_KEYS)
        if bad:
            raise SpecError(f"{where}: unknown key {bad[0]!r} in [shape.{sname}] "
                            f"(known: {', '.join(sorted(_SHAPE_KEYS))})")
        d = dict(SHAPE_DEFAULTS[sname])
        d.update((prof.shape_defaults or {}).get(sname, {}))
        key = f"shape.{sname}"
        conns = over.get("connections", d["connections"])
        # a list: the shape once per count (its rows carry the count: the `connections` column)
        counts = conns if isinstance(conns, list) else [conns]
        if not counts:
            raise SpecError(f"{where}: {key}.connections is an empty list")
        counts = [c if c == "max" else _int(where, f"{key}.connections", c, 1, 1_000_000)
                  for c in counts]
        conns = counts[0]
        pipeline = _int(where, f"{key}.pipeline", over.get("pipeline", d["pipeline"]), 1, 4096)
        sdur = _int(where, f"{key}.duration", over.get("duration", duration), 1, 3600)
        stimeout = _int(where, f"{key}.timeout", over.get("timeout", timeout), 1, 3600)
        spath = over.get("path", "/hello")
        if not isinstance(spath, str) or not spath.startswith("/") or any(
                c.isspace() for c in spath):
            raise SpecError(f"{where}: {key}.path must start with '/' and have no spaces, "
                            f"not {spath!r}")
        # wrk cannot offer a rate: the rate shape falls back to h2load under wrk
        tool = over.get("load_tool", "h2load" if sname == "rate" and load_tool == "wrk"
                        else load_tool)
        if tool not in LOAD_TOOLS:
            raise SpecError(f"{where}: {key}.load_tool must be one of {', '.join(LOAD_TOOLS)}, "
                            f"not {tool!r}")
        if sname == "rate" and tool == "wrk":
            raise SpecError(f"{where}: the rate shape needs load_tool = \"h2load\" or "
                            f"\"kourier-lab\" (wrk cannot offer a fixed rate)")
        corpus = d.get("corpus")
        if corpus and tool == "h2load":
            raise SpecError(f"{where}: the {sname} shape sends a request corpus, which only wrk "
                            f"and kourier-lab do here (h2load repeats one request); set "
                            f"{key}.load_tool = \"wrk\" or \"kourier-lab\"")
        if corpus:
            from .corpora import CORPORA
            if pipeline > CORPORA[corpus].count:
                raise SpecError(f"{where}: {key}.pipeline {pipeline} is deeper than the {corpus} "
                                f"corpus ({CORPORA[corpus].count} requests): a write would repeat "
                                f"requests")
            if "path" in over:
                raise SpecError(f"{where}: the {sname} shape's requests bring their own paths "
                                f"(data/corpora/{corpus}.corpus); remove {key}.path")
        steps = _int(where, f"{key}.rate_steps", over.get("rate_steps", 6), 1, 50)
        rates = over.get("rates", [])
        if not isinstance(rates, list) or not all(
                isinstance(r, (int, float)) and not isinstance(r, bool) and r > 0 for r in rates):
            raise SpecError(f"{where}: {key}.rates must be a list of positive requests/s, "
                            f"not {rates!r}")
        if (set(over) & {"rate_steps", "rates"}) and sname != "rate":
            raise SpecError(f"{where}: rate_steps and rates belong to [shape.rate], "
                            f"not [shape.{sname}]")
        for conns in dict.fromkeys(counts):
            shapes.append(Shape(sname, conns, pipeline, d["browser"], sdur, stimeout, spath, tool,
                                steps, tuple(float(r) for r in rates), corpus, d.get("app", "default")))

    hosts = None
    if "hosts" in data:
        try:
            hosts = parse_hosts(data["hosts"], where)
        except HostsError as e:
            raise SpecError(str(e)) from None
        if any(s.name in ("rate", "connections") for s in shapes):
            raise SpecError(f"{where}: the rate and connections shapes run on this machine only "
                            f"(remove them or the [hosts] table)")
        if any(s.app != "default" for s in shapes):
            raise SpecError(f"{where}: the api shape runs on this machine only (its servers "
                            f"start with --app demo; remove it or the [hosts] table)")
        if "uring" in ceilings:
            raise SpecError(f"{where}: the io_uring ceiling runs on this machine only (not on [hosts] "
                            f"yet); remove \"uring\" from ceilings or the [hosts] table")
        if any(s.load_tool != "wrk" for s in shapes):
            raise SpecError(f"{where}: with [hosts] the load tool is wrk (h2load runs on this "
                            f"machine only); set load_tool = \"wrk\"")
    return Experiment(name=name, path=path, description=description, profile=profile,
                      repetitions=repetitions, duration_s=duration, warmup_s=warmup,
                      pause_s=pause, timeout_s=timeout, request_timeout_s=request_timeout,
                      idle_timeout_s=idle_timeout, stacks=stacks, peers=peers, shapes=shapes,
                      head_memo=head_memo, fold_runs=fold_runs, uring_features=tuple(uring_features),
                      ceilings=ceilings, response=response, hosts=hosts, load_io=load_io)


def load_experiment(path: Union[str, Path]) -> Experiment:
    """Read and validate one experiment file."""
    p = Path(path)
    shown = str(path)
    if tomllib is None:  # pragma: no cover
        raise SpecError("reading experiments needs Python 3.11+ (tomllib) or the 'tomli' package")
    if not p.is_file():
        raise SpecError(f"{shown}: no such experiment file")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SpecError(f"{shown}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{shown}: not valid TOML: {e}") from None
    return parse_experiment(data, shown)
