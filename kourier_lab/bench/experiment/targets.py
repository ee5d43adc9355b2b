"""What gets measured: the ceiling, our stacks (loop/parser/buffer), the peers.

Availability is decided here, not in the experiment file: a stack whose loop,
parser or buffer did not load on this machine, or a peer that is not installed,
becomes a target with a skip reason (a row saying "skipped: why"), never a crash.
"""
from __future__ import annotations

import importlib
import itertools
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

KINDS = ("ceiling", "stack", "peer")


@dataclass(frozen=True)
class Target:
    kind: str                      # ceiling | stack | peer
    name: str                      # "ceiling", "c/c/c", "hyper"
    loop: Optional[str] = None
    parser: Optional[str] = None
    buffer: Optional[str] = None
    skip_reason: str = ""
    head_memo: bool = False        # stacks only: served with --head-memo on
    fold_runs: bool = False        # stacks only: served with --fold-runs on
    uring_features: str = ""       # uring stacks only: the switches on (server/config.py), "" = the default

    @property
    def stack(self) -> str:
        """loop/parser/buffer of a stack target, whatever its memo and fold settings."""
        return f"{self.loop}/{self.parser}/{self.buffer}"


MEMO_SUFFIX = "+memo"     # a memo-on stack's server name: "c/c/c+memo", its own labelled variant
FOLD_SUFFIX = "+fold"     # a fold-on stack's: "c/c/c+fold" (both on: "c/c/c+memo+fold")


CEILING = Target("ceiling", "ceiling")
URING_CEILING_NAME = "ceiling-uring"      # the same bytes over io_uring (`ceiling --uring`)
CEILING_APIS = ("epoll", "uring")


def uring_ceiling() -> Target:
    """The io_uring ceiling, or a skipped one saying why it cannot run here."""
    from .ceiling import uring_unavailable
    why = uring_unavailable()
    return Target("ceiling", URING_CEILING_NAME, loop="uring",
                  skip_reason=f"the io_uring ceiling cannot run here: {why}" if why else "")


def ceiling_api(server: str) -> str:
    """Which kernel API a server name talks through: "uring" for the uring
    stacks ("uring/c/c", "uring/c/c~no-multishot") and the io_uring ceiling,
    "epoll" for everything else.  A row's ratio to the ceiling is to the
    ceiling of its own API when the batch has both."""
    name = str(server)
    return "uring" if name == URING_CEILING_NAME or name.startswith("uring/") else "epoll"


def ceiling_targets(apis=("epoll",)) -> List[Target]:
    """The ceilings an experiment asks for (`ceilings = ["epoll", "uring"]`):
    the epoll one always first."""
    out = [CEILING]
    if "uring" in apis:
        out.append(uring_ceiling())
    return out


def _registry(component: str) -> Tuple[Optional[List[str]], Dict[str, str], str]:
    """(names that loaded, {name: why not}, problem) for kourier_lab.<component>."""
    try:
        mod = importlib.import_module(f"kourier_lab.{component}")
        names = list(mod.names())
    except (ImportError, AttributeError) as e:
        return None, {}, f"kourier_lab.{component} has no registry on this checkout ({e})"
    except Exception as e:  # a registry that raises is reported, not fatal
        return None, {}, f"kourier_lab.{component}.names() failed: {type(e).__name__}: {e}"
    try:
        bad = dict(getattr(mod, "unavailable", lambda: {})())
    except Exception:
        bad = {}
    return names, bad, ""


def stack_registries():
    return {c: _registry(c) for c in ("loops", "parsers", "buffers")}


def _stack_target(loop: str, parser: str, buffer: str, regs) -> Target:
    from ...registry import is_user_spec, label
    why = []
    for component, value in (("loops", loop), ("parsers", parser), ("buffers", buffer)):
        names, bad, problem = regs[component]
        if is_user_spec(value) and names is not None:
            # a user's variant: loaded here once, so a broken one is a skip reason
            ok, reason = importlib.import_module(f"kourier_lab.{component}").available(value)
            if not ok:
                why.append(reason)
            continue
        if names is None:
            why.append(problem)
        elif value not in names:
            if value in bad:
                why.append(f"{component[:-1]} {value!r} unavailable: {bad[value]}")
            else:
                why.append(f"no {component[:-1]} named {value!r} (registered: "
                           f"{', '.join(names) or 'none'})")
    if not why:
        ok, reason = _supports(loop, parser, buffer)
        if not ok:
            why.append(reason)
    return Target("stack", f"{label(loop)}/{label(parser)}/{label(buffer)}", loop, parser, buffer,
                  "; ".join(why))


def _supports(loop: str, parser: str, buffer: str) -> Tuple[bool, str]:
    """loops.supports() when the registry has it (a loop may restrict combinations)."""
    try:
        mod = importlib.import_module("kourier_lab.loops")
        return tuple(mod.supports(loop, parser, buffer))
    except (ImportError, AttributeError):
        return True, ""


def _diagonal(loop: str, known) -> Tuple[str, str, str]:
    """The loop with the parser/buffer of its own language, else the first
    pair it supports (asyncio: python/python)."""
    mine = (loop, loop if loop in known["parsers"] else "python",
            loop if loop in known["buffers"] else "python")
    if _supports(*mine)[0]:
        return mine
    for parser in [mine[1]] + known["parsers"]:
        for buffer in [mine[2]] + known["buffers"]:
            if _supports(loop, parser, buffer)[0]:
                return loop, parser, buffer
    return mine


def _declared_unsupported(combo, regs) -> bool:
    loaded = all(value in regs[comp][0]
                 for comp, value in zip(("loops", "parsers", "buffers"), combo))
    return loaded and not _supports(*combo)[0]


def expand_stacks(entries: List[str]) -> List[Target]:
    """Stack names from an experiment ("l/p/b", "all", "diagonal") -> targets.

    all       every loop x parser x buffer combination known to the registries
              that the loop supports (loops.supports); combinations with a
              component that did not load appear as skipped
    diagonal  each loop with the parser and buffer of its own language (asyncio,
              which has none, with the Python ones): one natural stack per loop
    """
    regs = stack_registries()
    out: List[Target] = []
    for entry in entries:
        if entry in ("all", "diagonal"):
            known = {}
            for component in ("loops", "parsers", "buffers"):
                names, bad, problem = regs[component]
                if names is None:
                    out.append(Target("stack", entry, skip_reason=f"stacks {entry!r}: {problem}"))
                    break
                known[component] = sorted(set(names) | set(bad))
            else:
                if entry == "all":
                    # Combinations a loop declares it cannot run are not stacks
                    # (no row); those with a component that did not load are
                    # kept, so they show up as skipped with the reason.
                    combos = [c for c in itertools.product(known["loops"], known["parsers"],
                                                           known["buffers"])
                              if not _declared_unsupported(c, regs)]
                else:
                    combos = [_diagonal(lp, known) for lp in known["loops"]]
                out.extend(_stack_target(*c, regs) for c in combos)
        else:
            from ...registry import split_stack
            parts = split_stack(entry)
            if parts is None:
                out.append(Target("stack", entry, skip_reason=f"stack {entry!r} is not loop/parser/buffer"))
                continue
            out.append(_stack_target(*parts, regs))
    seen, unique = set(), []
    for t in out:
        if t.name not in seen:
            seen.add(t.name)
            unique.append(t)
    return unique


def peers_module():
    """kourier_lab.peers if it has the start/stop/available/names API, else (None, why)."""
    try:
        mod = importlib.import_module("kourier_lab.peers")
        for attr in ("names", "available", "start", "stop"):
            getattr(mod, attr)
        return mod, ""
    except (ImportError, AttributeError) as e:
        return None, f"kourier_lab.peers is not available on this checkout ({e})"


def expand_peers(entries: List[str]) -> List[Target]:
    if not entries:
        return []
    mod, problem = peers_module()
    if mod is None:
        names = [e for e in entries if e != "all"] or ["all"]
        return [Target("peer", n, skip_reason=problem) for n in names]
    known = list(mod.names())
    names = []
    for e in entries:
        names.extend(known if e == "all" else [e])
    out = []
    for n in dict.fromkeys(names):
        if n not in known:
            out.append(Target("peer", n, skip_reason=f"no peer named {n!r} "
                                                     f"(known: {', '.join(known) or 'none'})"))
            continue
        try:
            ok, why = mod.available(n)
        except Exception as e:
            ok, why = False, f"peers.available({n!r}) failed: {type(e).__name__}: {e}"
        why = " | ".join(ln.strip() for ln in str(why).splitlines() if ln.strip())
        out.append(Target("peer", n, skip_reason="" if ok else f"peer {n} unavailable: {why}"))
    return out


def with_head_memo(targets: List[Target], head_memo=(False,), fold_runs=(False,)) -> List[Target]:
    """Each stack once per memo and fold setting (memo-on ones named "<stack>+memo",
    fold-on ones "<stack>+fold", both "<stack>+memo+fold")."""
    import dataclasses
    out = []
    for t in targets:
        if t.kind != "stack" or t.loop is None:
            out.append(t)
            continue
        for memo in head_memo:
            for fold in fold_runs:
                name = t.name + (MEMO_SUFFIX if memo else "") + (FOLD_SUFFIX if fold else "")
                out.append(dataclasses.replace(t, head_memo=bool(memo), fold_runs=bool(fold),
                                               name=name))
    return out


URING_SUFFIX = "~"        # a uring stack with other switches: "uring/c/c~no-multishot"


def with_uring_features(targets: List[Target], settings=("default",)) -> List[Target]:
    """Each uring stack once per --uring-features setting (canonical switches in
    Target.uring_features; named "<stack>~<setting>" unless "default")."""
    import dataclasses
    from ...server.config import parse_uring_features
    out = []
    for t in targets:
        if t.kind != "stack" or t.loop != "uring":
            out.append(t)
            continue
        for setting in settings:
            name = t.name + ("" if setting == "default" else URING_SUFFIX + setting)
            out.append(dataclasses.replace(t, uring_features=parse_uring_features(setting), name=name))
    return out


def expand_targets(stacks: List[str], peers: List[str], head_memo=(False,),
                   fold_runs=(False,), uring_features=("default",), ceilings=("epoll",)) -> List[Target]:
    stacks_ = with_uring_features(with_head_memo(expand_stacks(stacks), head_memo, fold_runs), uring_features)
    return [*ceiling_targets(ceilings), *stacks_, *expand_peers(peers)]
