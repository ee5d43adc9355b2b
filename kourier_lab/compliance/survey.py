"""Both suites against every kourier_lab stack and every peer, as tables and a chart.

    from kourier_lab.compliance import survey
    s = survey.run_survey(quick=True)
    s.scores            # one row per (target, suite)
    s.cases             # one row per strict case per target
    survey.score_table(s.scores)
    survey.plot_scores(s.scores)

A target that cannot run here (a stack whose variant did not load, a peer whose
toolchain is missing) gets a row saying why, not a score.
"""
import socket
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from . import PUBLISHED_SCORES, run_published, run_strict

SUITES = ("published", "strict")


@dataclass
class Target:
    kind: str                      # "stack" or "peer"
    label: str                     # e.g. "kourier_lab python/python/python", "peer go"
    loop: str = ""
    parser: str = ""
    buffer: str = ""
    peer: str = ""


@dataclass
class Survey:
    scores: object                 # pandas.DataFrame
    cases: object                  # pandas.DataFrame
    failures: List[dict] = field(default_factory=list)
    categories: object = None      # pandas.DataFrame: published-suite rows per category per target


def stack_targets(one_per_loop: bool = False) -> List[Target]:
    """Every runnable loop/parser/buffer combination (empty if the server is not
    importable); with one_per_loop, each loop once, with the parser and buffer
    of its own language where it can (asyncio: python, uring: c)."""
    try:
        from .. import loops
    except ImportError:
        return []
    combos = loops.combinations()
    if one_per_loop:
        picked = {}
        for lo, p, b in combos:
            own = lo if lo in ("python", "numba", "c") else ("c" if lo == "uring" else "python")
            score = (p == own) + (b == own)
            if lo not in picked or score > picked[lo][0]:
                picked[lo] = (score, (lo, p, b))
        combos = [combo for _, combo in picked.values()]
    return [Target("stack", f"kourier_lab {lo}/{p}/{b}", lo, p, b) for lo, p, b in combos]


def peer_targets() -> List[Target]:
    from .. import peers
    return [Target("peer", f"peer {n}", peer=n) for n in peers.names()]


def unavailable_stacks() -> dict:
    """{component/name: why} for variants that did not load on this machine."""
    out = {}
    try:
        from .. import buffers, loops, parsers
    except ImportError as e:
        return {"server": str(e)}
    for kind, mod in (("loop", loops), ("parser", parsers), ("buffer", buffers)):
        for name, why in mod.unavailable().items():
            out[f"{kind} {name}"] = why
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(target: Target):
    """(address, stop callable) for a running target."""
    if target.kind == "stack":
        from ..server.process import ServerProcess
        srv = ServerProcess(loop=target.loop, parser=target.parser, buffer=target.buffer, workers=1).start()
        return f"127.0.0.1:{srv.port}", srv.stop
    from .. import peers
    port = _free_port()
    proc = peers.start(target.peer, "127.0.0.1", port, workers=1)
    return f"127.0.0.1:{port}", lambda: peers.stop(proc)


def run_survey(quick: bool = True, targets: Optional[List[Target]] = None, suites=SUITES,
               log: Callable[[str], None] = print) -> Survey:
    """Run the suites against each target in turn (one at a time: the machine is shared)."""
    import pandas as pd
    from .. import peers
    targets = targets if targets is not None else stack_targets() + peer_targets()
    score_rows, case_rows, failures, category_rows = [], [], [], []
    for t in targets:
        base = dict(kind=t.kind, target=t.label)
        if t.kind == "peer":
            ok, why = peers.available(t.peer)
            if not ok:
                for s in suites:
                    score_rows.append(dict(base, suite=s, score=None, note=f"unavailable: {why}"))
                log(f"{t.label}: unavailable ({why})")
                continue
        t0 = time.perf_counter()
        try:
            address, stop = _start(t)
        except Exception as e:      # a target that does not come up is a row, not a crash
            for s in suites:
                score_rows.append(dict(base, suite=s, score=None, note=f"did not start: {e}"))
            lines = [ln for ln in str(e).splitlines() if ln.strip()] or [repr(e)]
            log(f"{t.label}: did not start ({lines[-1].strip()})")
            continue
        try:
            for s in suites:
                try:
                    r = run_published(address, quick=quick) if s == "published" else run_strict(address)
                except Exception as e:
                    score_rows.append(dict(base, suite=s, score=None, note=f"failed: {e}"))
                    log(f"{t.label} {s}: failed ({e})")
                    continue
                score_rows.append(r.summary_row(**base, note=""))
                if s == "published":
                    category_rows += [dict(base, **row) for row in r.rows]
                if s == "strict":
                    case_rows += [dict(base, **row) for row in r.rows]
                    failures += [dict(base, **f) for f in r.failures]
                log(f"{t.label} {s}: {r.score:.1f}% ({r.passed}/{r.total})")
        finally:
            stop()
        log(f"{t.label}: done in {time.perf_counter() - t0:.1f} s")
    return Survey(pd.DataFrame(score_rows), pd.DataFrame(case_rows), failures,
                  pd.DataFrame(category_rows))


def published_table():
    """The posts' published scores (data/published/kourier_2025_compliance.csv), shaped like run_survey's rows."""
    import pandas as pd
    try:
        from ..published_figures import load_published
        pub = load_published("compliance")
        items = list(zip(pub["server_label"], pub["compliance_pct"]))
    except (ImportError, OSError, KeyError):     # no data directory (e.g. an installed wheel)
        items = list(PUBLISHED_SCORES.items())
    return pd.DataFrame([dict(kind="published", target=f"published {k}", suite="published", score=float(v))
                         for k, v in items])


def score_table(scores):
    """target x suite, scores in %, published ones appended under the measured ones."""
    import pandas as pd
    both = pd.concat([scores, published_table()], ignore_index=True)
    both["score"] = both["score"].astype(float)
    order = list(dict.fromkeys(zip(both["kind"], both["target"])))
    # unstack, not pivot_table: a target that could not run keeps its (empty) row
    table = (both.drop_duplicates(["kind", "target", "suite"]).set_index(["kind", "target", "suite"])["score"]
             .unstack("suite").reindex(pd.MultiIndex.from_tuples(order, names=["kind", "target"])))
    return table.reindex(columns=[s for s in SUITES if s in table.columns])


def strict_matrix(cases):
    """case x target: True/False per strict case (only cases some target failed,
    only targets that failed one of them)."""
    if cases is None or len(cases) == 0:
        return cases
    m = cases.pivot_table(index=["group", "case"], columns="target", values="passed", aggfunc="first")
    m = m[~m.all(axis=1)]
    return m.loc[:, ~m.all(axis=0)]


def strict_failures_by_case(cases):
    """One row per strict case that some target failed: how many targets ran it,
    how many failed, and which (the readable form of strict_matrix when many
    targets pass everything)."""
    import pandas as pd
    cols = ["group", "case", "targets", "failed", "failed_by"]
    if cases is None or len(cases) == 0:
        return pd.DataFrame(columns=cols)
    rows = []
    for (group, case), g in cases.groupby(["group", "case"], sort=False):
        bad = g.loc[~g["passed"].astype(bool), "target"].tolist()
        if bad:
            rows.append(dict(group=group, case=case, targets=len(g), failed=len(bad),
                             failed_by=", ".join(bad)))
    return pd.DataFrame(rows, columns=cols).sort_values(["failed", "group"], ascending=[False, True],
                                                        kind="stable").reset_index(drop=True)


def failures_by_target(failures):
    """The strict failures grouped per target: count and the cases' names."""
    import pandas as pd
    cols = ["target", "failed", "cases"]
    if not failures:
        return pd.DataFrame(columns=cols)
    f = pd.DataFrame(failures)
    out = f.groupby("target", sort=False)["case"].agg(lambda c: ", ".join(c)).to_frame("cases")
    out.insert(0, "failed", f.groupby("target", sort=False).size())
    return out.reset_index().sort_values("failed", ascending=False, kind="stable").reset_index(drop=True)


def full_suite_estimates(categories):
    """From published-suite category rows (Survey.categories): each target's
    score weighted by the published category sizes, i.e. what the full suite
    would score if each sampled category's pass rate held, with the sampling
    error (one binomial standard error) — the figure that can stand beside the
    posts' scores when quick mode sampled the two pct-encoding categories.
    Whole categories contribute no error; the measured score (sample-weighted)
    is kept beside it."""
    import math

    import pandas as pd
    cols = ["kind", "target", "measured_score", "requests", "full_suite_requests",
            "estimated_full_score", "standard_error", "sampled"]
    if categories is None or len(categories) == 0:
        return pd.DataFrame(columns=cols)
    rows = []
    for (kind, target), g in categories.groupby(["kind", "target"], sort=False):
        g = g[g["requests"] > 0]
        size = g["published_size"].astype(float)
        frac = g["detected"] / g["requests"]
        weight = size / size.sum()
        sampled = g["requests"] < g["published_size"]
        var = (weight ** 2 * frac * (1 - frac) / g["requests"]).where(sampled, 0.0).sum()
        rows.append(dict(kind=kind, target=target,
                         measured_score=100.0 * g["detected"].sum() / g["requests"].sum(),
                         requests=int(g["requests"].sum()), full_suite_requests=int(size.sum()),
                         estimated_full_score=100.0 * float((weight * frac).sum()),
                         standard_error=100.0 * math.sqrt(var),
                         sampled=", ".join(g.loc[sampled, "category"])))
    return pd.DataFrame(rows, columns=cols)


def plot_scores(scores, ax=None, title: str = "HTTP syntax compliance"):
    """Horizontal bars: measured published-suite and strict scores, beside the posts'
    published scores, in the package style (style.py: the posts' figures in
    the published colour everywhere, the legend outside the bars).  Without `ax`
    the figure is an Agg Figure (no pyplot): show it with bench.plots.throughput.to_image(ax.figure)."""
    from .. import style
    table = score_table(scores)
    if ax is None:
        _, axes = style.figure(1, 1, figsize=(9, 0.35 * len(table) + 1.8))
        ax = axes[0][0]
    labels = [t for _, t in table.index]
    kinds = [k for k, _ in table.index]
    y = range(len(table))
    pub = table.get("published")
    strict_s = table.get("strict")
    h = 0.4
    if pub is not None:
        colors = [style.PUBLISHED_COLOR if k == "published" else style.MEASURED_COLOR for k in kinds]
        bars = ax.barh([i - h / 2 for i in y], pub.fillna(0), height=h, color=colors,
                       label="published suite, measured here")
        ax.bar_label(bars, labels=["" if v != v else f"{v:.1f}" for v in pub], fontsize="x-small", padding=2)
    if strict_s is not None:
        bars = ax.barh([i + h / 2 for i in y], strict_s.fillna(0), height=h, color="#5a9e4b",
                       label="strict suite, measured here")
        ax.bar_label(bars, labels=["" if v != v else f"{v:.1f}" for v in strict_s], fontsize="x-small", padding=2)
    ax.set_yticks(list(y))
    ax.set_yticklabels(labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 110)
    ax.set_xlabel("% of passed tests (linear)")
    ax.set_title(title, fontsize=9)
    from matplotlib.patches import Patch
    handles = [Patch(facecolor=style.MEASURED_COLOR, label="published suite, measured here"),
               Patch(facecolor="#5a9e4b", label="strict suite, measured here"),
               Patch(facecolor=style.PUBLISHED_COLOR, label="the posts' published scores")]
    # outside the axes: a legend inside covers the longest bars
    style.legend_outside(ax, handles=handles)
    return ax


def estimates_beside_published(categories):
    """full_suite_estimates() for the peers the posts scored, beside the posts'
    figure, one line each, with what the comparison can say: a whole-suite
    score is comparable as it stands; a sampled one only as an estimate
    (published figure inside estimate ± 2 standard errors, or not)."""
    import pandas as pd
    cols = ["target", "measured_score", "estimated_full_score", "standard_error", "published",
            "reading"]
    est = full_suite_estimates(categories)
    if est.empty:
        return pd.DataFrame(columns=cols)
    try:
        from ..published_figures import load_published
        pub = load_published("compliance")
        by_peer = {str(p): float(v) for p, v in zip(pub["peer"], pub["compliance_pct"])
                   if isinstance(p, str) and p}
    except (ImportError, OSError, KeyError):
        by_peer = {}
    rows = []
    for _, r in est.iterrows():
        name = str(r["target"]).removeprefix("peer ")
        published = by_peer.get(name) if r["kind"] == "peer" else None
        if published is None:
            continue
        if not r["sampled"]:
            reading = ("whole suite run: comparable as it stands (peer versions differ from "
                       "the posts')")
        else:
            lo = r["estimated_full_score"] - 2 * r["standard_error"]
            hi = r["estimated_full_score"] + 2 * r["standard_error"]
            inside = lo <= published <= hi
            reading = (f"{r['sampled']} sampled: the measured score weights categories unlike "
                       f"the post's and is not comparable; the size-weighted estimate "
                       f"{'agrees with' if inside else 'differs from'} the post's figure "
                       f"(±2 SE: {lo:.1f}-{hi:.1f})")
        rows.append(dict(target=r["target"], measured_score=r["measured_score"],
                         estimated_full_score=r["estimated_full_score"],
                         standard_error=r["standard_error"], published=published,
                         reading=reading))
    return pd.DataFrame(rows, columns=cols)
