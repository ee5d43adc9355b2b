"""One load under two load tools (notebook 05): the post's wrk and the lab's
own generator (native/loadgen.c), side by side, server by server.

Where both tools leave the server saturated they measure the same thing and
should agree; where wrk runs out of CPU first its requests/s is wrk's, and the
lab's tool shows how far the server goes.  The table says which case each
server is in, rather than averaging the two.

    other = rerun_with(experiment, "kourier-lab", shapes=("pipelined", "distinct"),
                       stacks=["c/c/c"], peers=["hyper"], quick=True)
    table = side_by_side(pd.concat([df, other]))
    for line in side_by_side_lines(table): print(line)
"""
from __future__ import annotations

import dataclasses
import math
from typing import List, Optional, Sequence

import pandas as pd

# two saturated measurements of one server agree within this (the goal)
AGREE_WITHIN = 0.05


def rerun_with(experiment, load_tool: str, shapes: Sequence[str] = ("pipelined", "distinct"),
               stacks: Optional[List[str]] = None, peers: Optional[List[str]] = None,
               quick: bool = False, progress: bool = False) -> pd.DataFrame:
    """Run `experiment`'s `shapes` again with every shape's load tool set to
    `load_tool` (optionally fewer stacks and peers); its rows, a batch of their own."""
    from ..run.batch import run_experiment
    keep = [dataclasses.replace(s, load_tool=load_tool) for s in experiment.shapes if s.name in shapes]
    if not keep:
        raise ValueError(f"{experiment.name} has none of the shapes {', '.join(shapes)}")
    other = dataclasses.replace(
        experiment, name=f"{experiment.name}_{load_tool.replace('-', '_')}", shapes=keep,
        stacks=list(experiment.stacks if stacks is None else stacks),
        peers=list(experiment.peers if peers is None else peers))
    return run_experiment(other, quick=quick, progress=progress, summary=False)


def _client_ns_per_response(g: pd.DataFrame) -> float:
    """The load tool's own CPU per response (wrk: its rusage over its requests)."""
    cpu = g["loadgen_cpu_s"] if "loadgen_cpu_s" in g and g["loadgen_cpu_s"].notna().any() \
        else g.get("wrk_cpu_s")
    done = g["responses_total"] if "responses_total" in g and g["responses_total"].notna().any() \
        else g.get("requests")
    if cpu is None or done is None:
        return math.nan
    per = (cpu.astype(float) * 1e9 / done.astype(float).where(done > 0)).dropna()
    return float(per.median()) if len(per) else math.nan


def side_by_side(df: pd.DataFrame, shapes: Sequence[str] = ("pipelined", "distinct")) -> pd.DataFrame:
    """Per shape and server, each load tool's medians (requests/s, server
    CPU-µs per request, the tool's CPU-ns per response, the limit) and a verdict
    on whether the two measure the same thing.  Memo and folding rows are left
    out (every request its own)."""
    ok = df[(df["status"] == "ok") & df["req_per_s"].notna() & df["shape"].isin(list(shapes))]
    if "offered_rate" in ok.columns:
        ok = ok[ok["offered_rate"].isna()]
    for switch in ("head_memo", "fold_runs"):
        if switch in ok.columns:
            ok = ok[~ok[switch].fillna(False).astype(bool)]
    tools = list(dict.fromkeys(ok["load_tool"].dropna()))
    out = []
    for (shape, server), g in ok.groupby(["shape", "server"], sort=False):
        line = {"shape": shape, "server": server, "kind": g["server_kind"].iloc[0]}
        for tool in tools:
            t = g[g["load_tool"] == tool]
            limit = t["bottleneck"].mode() if "bottleneck" in t and t["bottleneck"].notna().any() else []
            line.update({
                f"req_per_s {tool}": t["req_per_s"].median() if len(t) else math.nan,
                f"cpu_us_per_req {tool}": t["cpu_us_per_req"].median() if len(t) else math.nan,
                f"client_ns_per_response {tool}": _client_ns_per_response(t) if len(t) else math.nan,
                f"limit {tool}": limit.iloc[0] if len(limit) else "",
                f"runs {tool}": len(t)})
        out.append(line)
    table = pd.DataFrame(out)
    if len(tools) == 2 and len(table):
        a, b = tools
        table["req_per_s ratio"] = table[f"req_per_s {b}"] / table[f"req_per_s {a}"]
        table["verdict"] = [_verdict(r, a, b) for _, r in table.iterrows()]
    table.attrs["tools"] = tools
    return table


def _verdict(r, a: str, b: str) -> str:
    la, lb, ratio = r[f"limit {a}"], r[f"limit {b}"], r["req_per_s ratio"]
    if not (isinstance(ratio, float) and math.isfinite(ratio)):
        return "measured under one tool only"
    if la == "server" and lb == "server":
        agree = abs(ratio - 1) <= AGREE_WITHIN
        return (f"both server-bound: {'agree' if agree else 'differ'} ({ratio - 1:+.1%} under {b})")
    bound = [t for t, lim in ((a, la), (b, lb)) if lim in ("client", "both")]
    if bound:
        return (f"{' and '.join(bound)} the limit: {'its' if len(bound) == 1 else 'their'} "
                f"requests/s is the tool's, not the server's ({ratio:.2f}x under {b})")
    return f"limits {la or '?'} / {lb or '?'}: not comparable ({ratio:.2f}x under {b})"


def side_by_side_lines(table: pd.DataFrame) -> List[str]:
    """One sentence per shape: where the tools agree, where one is the limit,
    and what each costs per response."""
    tools = table.attrs.get("tools", [])
    if len(tools) != 2 or table.empty:
        return ["one load tool only: nothing to put side by side"]
    a, b = tools
    lines = []
    for shape, g in table.groupby("shape", sort=False):
        both = g[g["verdict"].str.startswith("both server-bound")]
        agree = both[both["verdict"].str.contains(" agree ")]
        bound = g[g["verdict"].str.contains("the limit")]
        cost_a = g[f"client_ns_per_response {a}"].median()
        cost_b = g[f"client_ns_per_response {b}"].median()
        parts = [f"{shape}: both tools left the server saturated for {len(both)} of {len(g)} servers "
                 f"({len(agree)} within {AGREE_WITHIN:.0%})"]
        if len(bound):
            parts.append("a tool was the limit for " + ", ".join(
                f"{r['server']} ({r['verdict'].split(' the limit')[0]})" for _, r in bound.iterrows()))
        if math.isfinite(cost_a) and math.isfinite(cost_b):
            parts.append(f"client CPU per response (median over servers): {a} {cost_a:.0f} ns, "
                         f"{b} {cost_b:.0f} ns ({cost_b / cost_a:.2f}x)")
        lines.append("; ".join(parts) + ".")
    return lines
