"""Conclusions computed from the numbers a notebook just measured.

A notebook's sentence that states a measured relation ("python/c/c needs
N x less server CPU per request than python/python/python") is printed by a
function here, from the DataFrame the notebook produced, together with the
conditions it depends on (head memo on or off, quick mode, which side's CPUs
were saturated), so it stays true in quick mode, in full mode and on another
machine.  Markdown keeps the *why*; the numbers live in code output.

    summary = bench.summarize(df)
    print(findings.compare(summary, "python/c/c", "python/python/python"))
    print(findings.bottleneck_counts(summary))
    print(findings.quick_mode_note(QUICK, rows=df))
    findings.ceiling_check(summary)          # rows the ceiling does not bound, and why
    findings.reproduction(df)                # notebook 05: published vs measured ratios

Every function takes plain DataFrames (summary lines from
`results.summarize`, or the rows of a micro benchmark) and returns strings
or DataFrames; none measures anything.
"""
from __future__ import annotations

import math
from typing import Iterable, List, Optional, Sequence

import pandas as pd

from .bottleneck import saturated_side
from .summary import DISTINCT_SHAPE, IDENTICAL_SHAPE, summarize

# Two medians closer than this (relative) are reported as "about the same":
# a shared machine drifts between hours (README, "What it printed here") and
# by a few % within a batch.
SAME_WITHIN = 0.10


def _num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _fmt_ratio(r: float) -> str:
    return f"{r:.1f}x" if r < 9.95 else f"{r:.0f}x"


def _memo(line) -> str:
    memo = "memo on" if bool(line.get("head_memo", False)) else "memo off"
    return memo + (", folding on" if _flag(line.get("fold_runs", False)) else "")


def _flag(value) -> bool:
    try:
        return bool(value) and not pd.isna(value)
    except (TypeError, ValueError):
        return bool(value)


def _line(summary: pd.DataFrame, server: str, shape: Optional[str]) -> Optional[pd.Series]:
    s = summary[(summary["server"] == server) & summary["req_per_s"].notna()]
    if shape is not None:
        s = s[s["shape"] == shape]
    if "offered_rate" in s.columns:
        s = s[s["offered_rate"].isna()]
    return s.iloc[0] if len(s) else None


def _conditions(lines: Sequence[pd.Series], quick: Optional[bool]) -> str:
    parts = []
    memos = {_memo(x) for x in lines}
    parts.append(memos.pop() if len(memos) == 1 else
                 ", ".join(f"{x['server']} {_memo(x)}" for x in lines))
    labels = {str(x.get("bottleneck") or "") for x in lines}
    if len(labels) == 1:
        parts.append(saturated_side(labels.pop()))
    else:
        parts.append(", ".join(f"{x['server']} {saturated_side(x.get('bottleneck'))}"
                               for x in lines))
    if quick:
        parts.append("quick mode: indicative only")
    return "; ".join(parts)


# ---------------------------------------------------------------------------
# Relations between two servers of one summary


def compare(summary: pd.DataFrame, a: str, b: str, shape: Optional[str] = None,
            quick: Optional[bool] = None) -> str:
    """One sentence: how `a` relates to `b` in this summary, by server CPU per
    request (the figure that separates servers whatever the bottleneck) and by
    requests/s (which only separates them when both were server-bound)."""
    la, lb = _line(summary, a, shape), _line(summary, b, shape)
    missing = [n for n, x in ((a, la), (b, lb)) if x is None]
    if missing:
        return f"{' and '.join(missing)}: not measured{f' ({shape})' if shape else ''} in these rows."
    shape = shape or str(la["shape"])
    if quick is None and "quick" in summary.columns:
        quick = bool(summary["quick"].fillna(False).any())
    cpu_a, cpu_b = _num(la.get("cpu_us_per_req")), _num(lb.get("cpu_us_per_req"))
    rps_a, rps_b = _num(la["req_per_s"]), _num(lb["req_per_s"])
    parts = []
    if cpu_a > 0 and cpu_b > 0:
        r = cpu_b / cpu_a
        if abs(r - 1) < SAME_WITHIN:
            parts.append(f"{a} and {b} cost about the same server CPU per request "
                         f"({cpu_a:.3g} vs {cpu_b:.3g} µs)")
        elif r > 1:
            parts.append(f"{a} needs {_fmt_ratio(r)} less server CPU per request than {b} "
                         f"({cpu_a:.3g} vs {cpu_b:.3g} µs)")
        else:
            parts.append(f"{a} needs {_fmt_ratio(1 / r)} more server CPU per request than {b} "
                         f"({cpu_a:.3g} vs {cpu_b:.3g} µs)")
    if rps_a > 0 and rps_b > 0:
        r = rps_a / rps_b
        both_server = {str(la.get("bottleneck")), str(lb.get("bottleneck"))} <= {"server"}
        word = ("about as many requests/s as" if abs(r - 1) < SAME_WITHIN else
                f"{_fmt_ratio(r)} the requests/s of" if r > 1 else
                f"{_fmt_ratio(1 / r)} fewer requests/s than")
        tail = "" if both_server else " (requests/s compares the servers' work only when " \
                                      "both are server-bound)"
        parts.append(f"it serves {word} {b}{tail}")
    if not parts:
        return f"{a} vs {b} ({shape}): no figures to compare."
    return f"{shape}: " + "; ".join(parts) + f" [{_conditions([la, lb], quick)}]."


def bottleneck_counts(summary: pd.DataFrame, kinds: Iterable[str] = ("stack", "peer", "ceiling"),
                      shape: Optional[str] = None) -> str:
    """'wrk was the limit in 9 of 11 rows; the server in 2' over the summary's lines."""
    s = summary[summary["req_per_s"].notna()]
    if "kind" in s.columns:
        s = s[s["kind"].isin(list(kinds))]
    if shape is not None:
        s = s[s["shape"] == shape]
    if "offered_rate" in s.columns:
        s = s[s["offered_rate"].isna()]
    if s.empty:
        return "no measured rows to classify."
    tool = "wrk"
    if "load_tool" in s.columns and s["load_tool"].notna().any():
        tools = set(s["load_tool"].dropna())
        tool = tools.pop() if len(tools) == 1 else "the load tool"
    counts = s["bottleneck"].fillna("").value_counts()
    names = {"client": f"{tool} alone was the limit", "server": "the server alone",
             "both": f"both the server and {tool}", "contention": "other processes (contention)",
             "neither": "neither side (latency-bound)", "": "unknown"}
    parts = [f"{names.get(k, k)} in {n}" for k, n in counts.items()]
    where = f" ({shape})" if shape else ""
    out = f"Of {len(s)} measured rows{where}: " + "; ".join(parts) + "."
    contended = s[s["bottleneck"] == "contention"]["server"].tolist()
    if contended:
        out += (f" Where other processes shared these CPUs ({len(contended)} rows), every figure "
                f"of the row is disturbed: re-run on a quiet machine before quoting it.")
    client = s[s["bottleneck"].isin(["client", "both"])]["server"].tolist()
    if client:
        out += (f" Where {tool} was saturated ({', '.join(dict.fromkeys(client))}), requests/s "
                f"is {tool}'s limit and server CPU-µs per request is the figure to read.")
    return out


def ranking(summary: pd.DataFrame, shape: str, column: str = "cpu_us_per_req",
            kinds: Iterable[str] = ("stack", "peer")) -> str:
    """The servers of one shape ordered by a figure, as one line."""
    s = summary[(summary["shape"] == shape) & summary[column].notna()]
    if "kind" in s.columns:
        s = s[s["kind"].isin(list(kinds))]
    if s.empty:
        return f"{shape}: no rows."
    asc = column == "cpu_us_per_req"
    s = s.sort_values(column, ascending=asc)
    unit = "CPU-µs/request, lowest first" if asc else "requests/s, highest first"
    items = [f"{r['server']} {r[column]:.3g}"
             + (" (memo on)" if r.get("head_memo") else "")
             + (" (folding on)" if _flag(r.get("fold_runs")) else "")
             for _, r in s.iterrows()]
    return f"{shape} ({unit}): " + ", ".join(items) + "."


# ---------------------------------------------------------------------------
# What identical requests save (distinct vs pipelined)


def identical_gains(rows: pd.DataFrame, quick: Optional[bool] = None) -> List[str]:
    """One sentence per server measured under both distinct and pipelined in a
    batch: "X gains N x from identical requests", from server CPU-µs per
    request (distinct / pipelined, results.identical_saves), with its
    conditions.  `rows` are bench rows or their summary."""
    summary = rows if "identical_saves" in rows.columns else summarize(rows)
    if summary.empty:
        return []
    if quick is None:
        quick = bool(rows["quick"].fillna(False).any()) if "quick" in rows.columns else False
    lines = summary[summary["identical_saves"].notna()]
    out = []
    for _, d in lines.iterrows():
        same = summary[(summary["batch_id"] == d["batch_id"]) & (summary["server"] == d["server"])
                       & (summary["shape"] == IDENTICAL_SHAPE)]
        if same.empty:
            continue
        p = same.iloc[0]
        r = float(d["identical_saves"])
        cpu_d, cpu_p = _num(d["cpu_us_per_req"]), _num(p["cpu_us_per_req"])
        if abs(r - 1) < SAME_WITHIN:
            head = f"{d['server']} gains nothing measurable from identical requests"
        elif r > 1:
            head = f"{d['server']} gains {_fmt_ratio(r)} from identical requests"
        else:
            head = (f"{d['server']} pays {_fmt_ratio(1 / r)} more for identical requests "
                    f"than for distinct ones")
        sides = {saturated_side(x.get("bottleneck")) for x in (d, p)}
        cond = [_memo(d), sides.pop() if len(sides) == 1 else
                f"{saturated_side(d.get('bottleneck'))} on {DISTINCT_SHAPE}, "
                f"{saturated_side(p.get('bottleneck'))} on {IDENTICAL_SHAPE}"]
        if quick:
            cond.append("quick mode: indicative only")
        out.append(f"{head} ({cpu_d:.3g} µs server CPU per request on {DISTINCT_SHAPE}, "
                   f"{cpu_p:.3g} µs on {IDENTICAL_SHAPE}) [{'; '.join(cond)}].")
    return out


# ---------------------------------------------------------------------------
# What the ceiling bounds


def ceiling_check(summary: pd.DataFrame) -> pd.DataFrame:
    """Each server beside the ceiling of its batch and shape, flagged where the
    ceiling does not bound it, with the reason.

    The ceiling bounds a server's *work per request* only as the least CPU a
    responder of the same bytes needs; it bounds *throughput* only when the
    ceiling itself was server-bound (otherwise it measures the load tool, and
    any server the load tool also saturates lands within run-to-run spread of
    it, above or below).  A row under the ceiling's CPU per request or over its
    requests/s gets a flag naming the likely cause: the head memo, a response
    of other bytes, the ceiling load-tool-bound (spread), or none found."""
    rows = []
    s = summary[summary["req_per_s"].notna()]
    if "offered_rate" in s.columns:
        s = s[s["offered_rate"].isna()]
    from ..experiment.targets import ceiling_api
    s = s.assign(_conns=pd.to_numeric(s["connections"], errors="coerce").fillna(-1)
                 if "connections" in s.columns else -1)
    for (batch, shape, _), g in s.groupby(["batch_id", "shape", "_conns"], sort=False):
        ceils = g[g["kind"] == "ceiling"]
        if ceils.empty:
            continue
        # each row against the ceiling of its own kernel API (epoll, io_uring), else the epoll one
        by_api = {ceiling_api(c["server"]): c for _, c in ceils.iterrows()}
        for _, r in g[g["kind"] != "ceiling"].iterrows():
            c = by_api.get(ceiling_api(r["server"]), ceils.iloc[0])
            c_cpu, c_rps = _num(c.get("cpu_us_per_req")), _num(c["req_per_s"])
            c_spread = (_num(c.get("req_per_s_max")) - _num(c.get("req_per_s_min"))) / c_rps \
                if c_rps else math.nan
            of_rps = _num(r["req_per_s"]) / c_rps if c_rps else math.nan
            x_cpu = _num(r.get("cpu_us_per_req")) / c_cpu if c_cpu else math.nan
            over_rps, under_cpu = of_rps > 1.0, x_cpu < 1.0
            reasons = []
            if over_rps or under_cpu:
                if r.get("head_memo"):
                    reasons.append("head memo on: the parser is skipped")
                if _flag(r.get("fold_runs")):
                    reasons.append("run folding on: a run of equal requests is answered once")
                if r.get("bytes_differ") is True:
                    reasons.append(f"its response is {r.get('response_bytes')} B, the ceiling's "
                                   f"{c.get('response_bytes')} B")
                if over_rps and str(c.get("bottleneck")) != "server":
                    reasons.append(f"the ceiling was {saturated_side(c.get('bottleneck'))}, so "
                                   f"its req/s is not a bound (its runs' spread "
                                   f"±{c_spread / 2:.0%})")
                contended = [n for n, lab in (("the ceiling", c.get("bottleneck")),
                                              (str(r["server"]), r.get("bottleneck")))
                             if str(lab) == "contention"]
                if under_cpu and contended:
                    reasons.append(f"{' and '.join(contended)} ran contended: other processes on "
                                   f"the same CPUs disturb CPU time per request")
                if not reasons:
                    reasons.append("no setting explains it: within noise, or the ceiling lost "
                                   "time elsewhere; re-run before quoting")
            rows.append({"batch_id": batch, "shape": shape, "server": r["server"], "ceiling": c["server"],
                         "of_ceiling_req_per_s": of_rps, "x_ceiling_cpu_per_req": x_cpu,
                         "over_ceiling_req_per_s": over_rps,
                         "under_ceiling_cpu_per_req": under_cpu,
                         "ceiling_bottleneck": c.get("bottleneck"),
                         "reason": "; ".join(reasons)})
    return pd.DataFrame(rows, columns=["batch_id", "shape", "server", "ceiling", "of_ceiling_req_per_s",
                                       "x_ceiling_cpu_per_req", "over_ceiling_req_per_s",
                                       "under_ceiling_cpu_per_req", "ceiling_bottleneck",
                                       "reason"])


def _ceiling_rps_meaning(label) -> str:
    return {"server": "bounds what a server can reach here",
            "client": "is the load tool's limit, not a bound on the servers",
            "both": "is the load tool's limit as much as its own, not a bound on the servers",
            "contention": "was held down by other processes on these CPUs, not a bound",
            "neither": "was not CPU-limited (latency-bound), not a bound"}.get(
                str(label or ""), "is of unknown limit, not a bound")


def ceiling_sentences(summary: pd.DataFrame) -> List[str]:
    """What the ceiling bounded in these rows, one sentence per shape."""
    check = ceiling_check(summary)
    out = []
    for (shape, cname), g in check.groupby(["shape", "ceiling"], sort=False):
        ceil = summary[(summary["shape"] == shape) & (summary["kind"] == "ceiling")
                       & (summary["server"] == cname)]
        label = str(ceil["bottleneck"].iloc[0]) if len(ceil) else ""
        flagged = g[g["over_ceiling_req_per_s"] | g["under_ceiling_cpu_per_req"]]
        who = "the ceiling" if cname == "ceiling" else f"the {cname} ceiling (rows of its API)"
        head = (f"{shape}: {who} was {saturated_side(label)}, so its requests/s "
                + _ceiling_rps_meaning(label)
                + "; its CPU per request is the least a responder of the same bytes paid.")
        if flagged.empty:
            head += " No server went under its CPU per request or over its requests/s."
        else:
            head += " Beyond it: " + "; ".join(
                f"{r['server']} ({r['of_ceiling_req_per_s']:.0%} of its req/s, "
                f"{r['x_ceiling_cpu_per_req']:.2f}x its CPU: {r['reason']})"
                for _, r in flagged.iterrows()) + "."
        out.append(head)
    return out


# ---------------------------------------------------------------------------
# Micro benchmarks (notebooks 01, 02)


def micro_relation(table: pd.DataFrame, a: str, b: str, case: str, unit: str = "MB/s",
                   higher_is_better: bool = True, what: Optional[str] = None) -> str:
    """'`a` is N x faster than `b` on `case` (x vs y MB/s)' from a variant x case
    table (index: variant, columns: case)."""
    if a not in table.index or b not in table.index or case not in table.columns:
        return f"{a} vs {b} on {case}: not measured here."
    va, vb = _num(table.loc[a, case]), _num(table.loc[b, case])
    if not (va > 0 and vb > 0):
        return f"{a} vs {b} on {case}: no figure."
    r = va / vb if higher_is_better else vb / va
    if abs(r - 1) < SAME_WITHIN:
        rel = "about as fast as"
    elif r > 1:
        rel = f"{_fmt_ratio(r)} faster than"
    else:
        rel = f"{_fmt_ratio(1 / r)} slower than"
    return f"{what or 'on ' + case}, {a} is {rel} {b} ({va:,.4g} vs {vb:,.4g} {unit})."


def fastest(table: pd.DataFrame, case: str, exclude_memo: bool = True,
            unit: str = "MB/s") -> str:
    """The fastest variant on one case; the memo rows are left out unless asked
    (on a repeated corpus they measure one comparison, not a parser)."""
    if case not in table.columns:
        return f"{case}: not measured."
    col = table[case].dropna()
    if exclude_memo:
        col = col[[("memo" not in str(i)) for i in col.index]]
    if col.empty:
        return f"{case}: no rows."
    best = col.idxmax()
    second = col.drop(best).max() if len(col) > 1 else math.nan
    tail = f", {col[best] / second:.1f}x the next ({col.drop(best).idxmax()})" \
        if second > 0 else ""
    memo = " (head-memo rows left out: they skip the parser)" if exclude_memo else ""
    return f"on {case} the fastest is {best} at {col[best]:,.4g} {unit}{tail}{memo}."


def simd_gains(simd: pd.DataFrame, call: Optional[str] = None) -> List[str]:
    """Per case: each SIMD path against scalar, in the order scalar, sse42, avx2,
    from rows with columns simd, case, call, 'MB/s'."""
    order = [p for p in ("scalar", "sse42", "avx2") if p in set(simd["simd"])]
    d = simd if call is None else simd[simd["call"] == call]
    out = []
    for case, g in d.groupby("case", sort=False):
        med = g.groupby("simd")["MB/s"].median()
        if "scalar" not in med:
            continue
        parts = [f"{p} {med[p] / med['scalar']:.2f}x scalar" for p in order if p != "scalar"
                 and p in med]
        line = f"{case}: " + ", ".join(parts) if parts else f"{case}: only scalar here"
        if "avx2" in med and "sse42" in med:
            r = med["avx2"] / med["sse42"]
            if r < 1 - SAME_WITHIN / 2:
                line += f"; AVX2 is slower than SSE4.2 ({r:.2f}x)"
            elif r < 1 + SAME_WITHIN / 2:
                line += f"; AVX2 and SSE4.2 within {SAME_WITHIN / 2:.0%} ({r:.2f}x)"
        out.append(line + ".")
    return out


# ---------------------------------------------------------------------------
# Quick mode


def _rows_note(rows: pd.DataFrame) -> List[str]:
    ok = rows[rows["status"] == "ok"] if "status" in rows.columns else rows
    out = []
    if len(ok):
        dur = sorted({int(v) for v in ok["duration_s"].dropna()}) if "duration_s" in ok else []
        reps = sorted({int(v) for v in ok["repetitions"].dropna()}) if "repetitions" in ok else []
        if dur or reps:
            out.append(f"load runs of {'/'.join(map(str, dur)) or '?'} s, "
                       f"{'/'.join(map(str, reps)) or '?'} counted runs per server")
        if "connections" in ok and (ok["shape"] == "connections").any():
            c = ok.loc[ok["shape"] == "connections", "connections"].dropna()
            if len(c):
                out.append(f"the many-connections step stopped at {int(c.max()):,} connections "
                           f"by design (not by a limit)")
    return out


def quick_mode_note(quick: Optional[bool], rows: Optional[pd.DataFrame] = None,
                    changed: Iterable[str] = (), not_comparable: Iterable[str] = ()) -> str:
    """What quick mode changed in this notebook and which figures are then not
    comparable (with the posts, with full-mode runs, with the README's tables).

    `rows`: bench rows, read for what actually ran (durations, repetitions,
    stopped steps).  `changed` / `not_comparable`: what else the notebook's
    quick mode did (sampled suites, skipped cold compiles, fewer stacks)."""
    if rows is not None and quick is None and "quick" in rows.columns:
        quick = bool(rows["quick"].fillna(False).any())
    if not quick:
        return ("Full mode: every figure below is measured as the experiment specifies "
                "(still one shared machine: compare within a batch).")
    what = list(_rows_note(rows)) if rows is not None else []
    what += list(changed)
    lines = ["Quick mode (KOURIER_LAB_QUICK=1) changed: " + ("; ".join(what) or
                                                             "shorter measurements") + "."]
    nc = list(not_comparable) or ["absolute figures and close ratios (short runs are noisy)"]
    lines.append("Not comparable with full-mode runs, the README or the posts: " + "; ".join(nc)
                 + ".")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Notebook 05: the post's ratios beside ours


PUBLISHED_SETUP = dict(cores="6 cores / 12 SMT threads (Ryzen 5 1600)",
                       split="6 server + 6 wrk threads, not pinned (siblings shared)",
                       connections=512, pipeline=256, response_bytes=105)


def _pair_line(num: Optional[pd.Series], den: Optional[pd.Series]) -> dict:
    if num is None or den is None:
        return {}
    return {"measured": _num(num["req_per_s"]) / _num(den["req_per_s"]),
            "num": num, "den": den}


def reproduction(df: pd.DataFrame, shape: str = "pipelined") -> pd.DataFrame:
    """Published and measured ratios side by side, one pair per line, with what
    differs and a verdict that says "comparable" only when the settings and the
    bottleneck allow it: both servers of the measured pair server-bound (a
    ratio with wrk the limit measures wrk), memo off, a full-mode run, and for
    Kourier's pairs a stand-in that is a server (the ceiling never parses)."""
    from ...published_figures import published_ratios

    summary = summarize(df)
    summary = summary[(summary["shape"] == shape) & summary["req_per_s"].notna()]
    quick = bool(df["quick"].fillna(False).any()) if "quick" in df.columns else False
    honest = summary[~summary["head_memo"].fillna(False).astype(bool)
                     & ~summary["fold_runs"].fillna(False).astype(bool)]
    stacks = honest[honest["kind"] == "stack"]
    best = stacks.loc[stacks["req_per_s"].idxmax()] if len(stacks) else None
    ceiling = _line(honest[honest["kind"] == "ceiling"], "ceiling", shape)
    hyper, go = _line(honest, "hyper", shape), _line(honest, "go", shape)
    pub = published_ratios()
    pub = pub[(pub["figure"] == "req/s") & (pub["machine"] == "AMD Ryzen 5 1600")]
    pub = dict(zip(pub["pair"], pub["ratio"]))
    ok = df[(df["status"] == "ok") & (df["shape"] == shape)]
    here_split = (f"{int(ok['workers'].iloc[0])} server + {int(ok['wrk_threads'].iloc[0])} wrk "
                  f"threads, pinned to separate CPUs ({ok['server_cpus'].iloc[0]} | "
                  f"{ok['client_cpus'].iloc[0]})") if len(ok) else "?"
    here_load = (f"{int(ok['connections'].iloc[0])} connections x {int(ok['pipeline'].iloc[0])}"
                 if len(ok) and not pd.isna(ok["pipeline"].iloc[0]) else "?")
    pairs = [("kourier/hyper", "ceiling", ceiling, hyper), ("kourier/hyper", "best stack", best, hyper),
             ("kourier/go", "ceiling", ceiling, go), ("kourier/go", "best stack", best, go),
             ("hyper/go", "hyper/go", hyper, go)]
    rows = []
    for pub_pair, stand_in, num, den in pairs:
        published = pub.get(pub_pair, math.nan)
        p = _pair_line(num, den)
        label = (f"{stand_in} ({num['server']})/{den['server']}" if p and stand_in == "best stack"
                 else f"{stand_in}/{pub_pair.split('/')[1]}" if stand_in == "ceiling"
                 else "hyper/go")
        if not p:
            rows.append({"published_pair": pub_pair, "published": published,
                         "measured_pair": label, "measured": math.nan, "differs": "",
                         "verdict": "not measured in this batch"})
            continue
        differs = [f"split: post {PUBLISHED_SETUP['split']}; here {here_split}",
                   f"load: post 512 x 256; here {here_load}"]
        bn = {x["server"]: str(x.get("bottleneck") or "") for x in (num, den)}
        differs.append("bottleneck here: " + ", ".join(f"{k} {saturated_side(v)}"
                                                        for k, v in bn.items()))
        rb = {x["server"]: x.get("response_bytes") for x in (num, den)}
        differs.append("response bytes here: " + ", ".join(f"{k} {v}" for k, v in rb.items())
                       + f" (post: Kourier {PUBLISHED_SETUP['response_bytes']})")
        differs.append("memo off")
        reasons = []
        if quick:
            reasons.append("quick-mode runs (1 s)")
        not_server = [k for k, v in bn.items() if v != "server"]
        if not_server:
            reasons.append(f"{', '.join(not_server)} not server-bound (a ratio of requests/s "
                           f"then measures what limited them, not the servers)")
        if stand_in == "ceiling":
            reasons.append("the ceiling is not Kourier: it never parses, so it can only show "
                           "the most any server could reach here")
        elif stand_in == "best stack":
            reasons.append(f"{num['server']} is not Kourier")
        workers = int(ok["workers"].iloc[0]) if len(ok) else 0
        if reasons:
            verdict = "not comparable: " + "; ".join(reasons)
        elif workers != 6:
            verdict = (f"comparable per core only: both server-bound, memo off, full mode, but "
                       f"{workers} server core(s) against the post's 6 (how each scales across "
                       f"cores is not tested)")
        else:
            verdict = "comparable (both server-bound, memo off, full mode, 6 server threads)"
        rows.append({"published_pair": pub_pair, "published": published, "measured_pair": label,
                     "measured": p["measured"], "differs": "; ".join(differs),
                     "verdict": verdict})
    return pd.DataFrame(rows, columns=["published_pair", "published", "measured_pair",
                                       "measured", "differs", "verdict"])


def reproduction_lines(table: pd.DataFrame) -> List[str]:
    """The reproduction table as lines of text: published and measured on one
    line, then what differs and the verdict."""
    out = []
    for _, r in table.iterrows():
        meas = "not measured" if pd.isna(r["measured"]) else f"{r['measured']:.2f}x"
        out.append(f"{r['published_pair']} published {r['published']:.2f}x  |  "
                   f"{r['measured_pair']} measured {meas}")
        if r["differs"]:
            out.append(f"    differs: {r['differs']}")
        out.append(f"    verdict: {r['verdict']}")
    return out


def buffer_strategy_sentences(strategies: pd.DataFrame) -> List[str]:
    """Per scenario of numba_costs.buffer_strategies: the fastest strategy, its
    lead over the next, and whether that lead is larger than the runs' spread."""
    out = []
    for scenario, d in strategies.groupby("scenario", sort=False):
        d = d.sort_values("mb_per_s", ascending=False)
        if len(d) < 2:
            continue
        a, b = d.iloc[0], d.iloc[1]
        lead = a["mb_per_s"] / b["mb_per_s"]
        sa, sb = _num(a.get("spread_pct")), _num(b.get("spread_pct"))
        if lead - 1 < SAME_WITHIN:
            sure = "about the same: no clear winner in this run"
        elif max(sa, sb) / 2 < (lead - 1) * 100:
            sure = "a lead larger than either's run-to-run spread"
        else:
            # the spread is max - min over the runs: one disturbed run inflates it
            sure = (f"runs' spread ±{sa / 2:.0f} % and ±{sb / 2:.0f} % (a disturbed run), so "
                    f"re-run before quoting this lead")
        slowest = d.iloc[-1]
        out.append(f"{scenario}: {a['strategy']} is fastest ({a['mb_per_s']:,.0f} MB/s), "
                   f"{lead:.2f}x {b['strategy']} — {sure}; slowest {slowest['strategy']} "
                   f"({slowest['mb_per_s']:,.0f} MB/s, {a['mb_per_s'] / slowest['mb_per_s']:.1f}x "
                   f"slower).")
    return out


def jit_sentences(jit: pd.DataFrame) -> List[str]:
    """Total first-call seconds per cache state (numba_costs.jit_costs rows)."""
    out = []
    for cache, g in jit.groupby("cache", sort=False):
        top = g.loc[g["seconds"].idxmax()]
        out.append(f"{cache}: {g['seconds'].sum():.2f} s over {len(g)} kernels; the slowest is "
                   f"{top['component']}: {top['function']} at {top['seconds']:.2f} s.")
    is_cold = jit["cache"].astype(str).str.startswith("cold")
    if is_cold.any() and (~is_cold).any():
        cold, warm = jit[is_cold]["seconds"].sum(), jit[~is_cold]["seconds"].sum()
        if warm > 0:
            out.append(f"the on-disk cache cuts the first call {cold / warm:.1f}x "
                       f"({cold:.2f} s -> {warm:.2f} s).")
    return out


def _siblings(cpu: int, root: str) -> Optional[set]:
    # the kernel's list syntax ("0,6" or "0-1"); not cpus.parse_cpu_list, which
    # also checks the CPUs are usable by this process
    try:
        with open(f"{root}/cpu{cpu}/topology/thread_siblings_list") as f:
            out = set()
            for part in f.read().strip().split(","):
                a, _, b = part.partition("-")
                out.update(range(int(a), int(b or a) + 1))
            return out
    except (OSError, ValueError):
        return None


def smt_note(server_cpus: Sequence[int], client_cpus: Sequence[int],
             root: str = "/sys/devices/system/cpu") -> str:
    """Whether the server's and the load tool's CPUs share physical cores here
    (SMT siblings), as the kernel's topology reports it (a virtual machine
    reports its vCPUs, not the host's cores under them)."""
    shared, unknown = [], False
    for s in server_cpus:
        sib = _siblings(s, root)
        if sib is None:
            unknown = True
            continue
        shared += [(s, c) for c in client_cpus if c in sib and c != s]
    if shared:
        return ("here the server and wrk share physical cores: "
                + ", ".join(f"CPU {a} and {b} are SMT siblings" for a, b in shared)
                + " (as in the post's run)")
    if unknown:
        return "here the CPU topology is not readable: whether server and wrk share cores is unknown"
    return ("here no server CPU is an SMT sibling of a wrk CPU (as the kernel reports the topology; "
            "on a virtual machine, the host's cores under the vCPUs are not visible)")


# ---------------------------------------------------------------------------
# Notebook 06: memory per connection, and the soak

def _held(x) -> int:
    return int(_num(x)) if not math.isnan(_num(x)) else 0


def memory_sentences(df: pd.DataFrame) -> List[str]:
    """What the memory rows say, per server and across servers, from the rows
    themselves: the largest step each held and its cost per connection above the
    idle server, the idle baseline per worker (not a per-connection cost), and
    the spread of the per-connection cost at the largest count every server held."""
    ok = df[df["status"] == "ok"] if "status" in df.columns else df
    if ok.empty:
        return ["No memory step finished: there is nothing to read."]
    out = []
    tops = {}
    for server, g in ok.groupby("server", sort=False):
        top = g.loc[g["connections_held"].astype(float).idxmax()]
        tops[server] = top
        workers = _held(top.get("workers", 1)) or 1
        held = _held(top["connections_held"])
        per = _num(top["rss_per_conn_bytes"])
        cost = (f"{per:,.0f} B per connection above its idle RSS" if per >= 1 else
                f"no measurable growth above its idle RSS (under {4096 * workers / max(1, held):,.0f} B per "
                "connection: RSS moves in 4 KiB pages)")
        out.append(f"{server}: held {held:,} connections ({workers} worker{'s' if workers > 1 else ''}); "
                   f"{cost}.")
    common = min(_held(t["connections_held"]) for t in tops.values())
    at, bound = {}, {}        # bytes per connection near `common`; below a page: the bound instead
    for server, g in ok.groupby("server", sort=False):
        g = g[g["connections_held"].astype(float) >= common * 0.95]
        if len(g):
            r = g.loc[g["connections_held"].astype(float).idxmin()]
            per = _num(r["rss_per_conn_bytes"])
            if not math.isnan(per):
                at[server] = per
                if per < 1:
                    bound[server] = 4096 * (_held(r.get("workers", 1)) or 1) / max(1, _held(r["connections_held"]))
    if len(at) >= 2:
        lo, hi = min(at, key=at.get), max(at, key=at.get)
        # below a page the figure is only a bound: no ratio is computed from it
        low = (f"no measurable growth ({lo}: under {bound[lo]:,.0f} B)" if lo in bound else
               f"{at[lo]:,.0f} B ({lo})")
        ratio = "" if lo in bound else f": {at[hi] / at[lo]:,.1f}x"
        out.append(f"At about {common:,} connections (the most every server held), the cost per connection "
                   f"runs from {low} to {at[hi]:,.0f} B ({hi}){ratio}.")
    # the idle server at its first step: the fewest workers, so the figures compare
    # (summed over many forked workers, shared pages are counted once per worker)
    base = {}
    for server, g in ok.groupby("server", sort=False):
        r = g.loc[g["connections_held"].astype(float).idxmin()]
        if not math.isnan(_num(r["baseline_rss_per_worker_kb"])):
            base[server] = (_num(r["baseline_rss_per_worker_kb"]), _held(r.get("workers", 1)) or 1)
    if base:
        lo = min(base, key=lambda k: base[k][0])
        hi = max(base, key=lambda k: base[k][0])
        span = (f"about {base[hi][0] / 1024:,.0f} MB for {'every server' if len(base) > 1 else lo}"
                if base[hi][0] <= base[lo][0] * 1.05 else
                f"from {base[lo][0] / 1024:,.0f} MB ({lo}) to {base[hi][0] / 1024:,.0f} MB ({hi})")
        workers = {w for _, w in base.values()}
        per = "per worker" if workers != {1} else "(one worker, with its supervisor if it has one)"
        out.append(f"Idle RSS of the server {per} at its first step, before any connection: {span}. That is "
                   "the runtime (interpreter, libraries, compiled code), not the connections: compare bytes "
                   "per connection, not RSS.")
    return out


def soak_sentences(soaked: pd.DataFrame) -> List[str]:
    """One line per soaked stack: flat or climbing, from its row."""
    out = []
    for _, r in soaked.iterrows():
        if r.get("status") != "ok":
            out.append(f"{r['server']}: the soak did not run ({r.get('note')}).")
            continue
        verdict = "flat" if bool(r["rss_flat"]) and bool(r["fds_flat"]) else "CLIMBING"
        out.append(f"{r['server']}: {verdict} over {_held(r['duration_s'])} s and {_held(r['requests']):,} requests "
                   f"(RSS max {_num(r['rss_first_third_max_kb']) / 1024:,.1f} -> "
                   f"{_num(r['rss_last_third_max_kb']) / 1024:,.1f} MB, descriptors "
                   f"{_num(r['fds_first_third_max']):,.0f} -> {_num(r['fds_last_third_max']):,.0f}); "
                   f"malformed requests answered {_held(r['malformed_answered'])}/{_held(r['malformed_sent'])}; "
                   f"alive at the end: {bool(r['server_alive'])}.")
    return out
