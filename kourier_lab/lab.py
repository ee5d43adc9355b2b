"""The lab panel: pick a stack and a load, Run, watch the rows arrive beside the stored ones.

Without widgets (scripts, tests, a notebook cell), the same run is one call
returning the rows as a DataFrame:

    from kourier_lab import lab
    df = lab.run("c", "c", "c", shape="pipelined", duration=2, repetitions=1)
    lab.plot_beside(df, lab.stored_rows())        # this run beside the last stored batch

In a notebook:

    lab.panel()                                   # widgets: loop/parser/buffer, load, Run, Stop

A run is an ordinary `kourier-lab bench` batch (experiment "lab"): the ceiling
and the chosen stack, each started pinned on the machine's core split, every
request parsed unless the head memo is switched on (then the row says so and
the server is named "+memo"; run folding likewise, "+fold"); its rows are
stored with every other batch.
Stop (the button, a kernel interrupt, or Ctrl-C around `run`) unwinds the run
like `kourier-lab bench` does: finished rows kept, every server and load
process it started stopped (kourier_lab.procs).
"""
from __future__ import annotations

import io
import os
import signal
import threading
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import pandas as pd

from . import procs
from . import style

# the load shapes the panel offers, with the parameters it starts from; the
# pipelined default is 64 x 16 (not the post's 512 x 256) so that a pure-Python
# stack answers well within wrk's timeout on one server CPU.  distinct, real and
# api send a corpus (every request of a write different; bench/experiment/corpora.py); api
# is answered by the demo app's handlers, so its ceiling row is a skipped row.
SHAPES: Dict[str, Dict[str, int]] = {
    "distinct": {"connections": 64, "pipeline": 16},
    "real": {"connections": 64, "pipeline": 16},
    "api": {"connections": 64, "pipeline": 16},
    "pipelined": {"connections": 64, "pipeline": 16},
    "keepalive": {"connections": 64, "pipeline": 1},
    "browser": {"connections": 64, "pipeline": 16},
}
EXPERIMENT_NAME = "lab"


def quick_mode() -> bool:
    return os.environ.get("KOURIER_LAB_QUICK", "") not in ("", "0")


def stacks() -> List[str]:
    """Every loop/parser/buffer combination the registries load here and the loop
    supports (loops.combinations()), C first, then Numba, Python, asyncio."""
    from . import loops
    order = {"c": 0, "numba": 1, "python": 2, "asyncio": 3}
    combos = ["/".join(c) for c in loops.combinations()]
    return sorted(combos, key=lambda s: [order.get(p, 9) for p in s.split("/")])


def _results_root(out=None) -> Path:
    from .paths import results_dir
    return Path(out) if out is not None else results_dir()


def stored_batches(results=None) -> List[str]:
    """Batch ids under the results directory, newest first."""
    root = _results_root(results)
    if not root.is_dir():
        return []
    return sorted((p.parent.name for p in root.glob("*/rows.parquet")), reverse=True)


def stored_rows(batch: Optional[str] = None, results=None, exclude: Sequence[str] = ()) -> pd.DataFrame:
    """The rows of one stored batch: `batch`, or the newest one not in `exclude`."""
    root = _results_root(results)
    names = [b for b in stored_batches(root) if b not in set(exclude)]
    if batch is None:
        if not names:
            return pd.DataFrame()
        batch = names[0]
    path = root / batch / "rows.parquet"
    if not path.exists():
        raise ValueError(f"no stored batch {batch!r} under {root} "
                         f"(stored: {', '.join(names[:5]) or 'none'})")
    return pd.read_parquet(path)


def _user_stack(loop, parser, buffer):
    """A user's variants by file path made absolute (the server runs elsewhere)."""
    from .registry import normalize
    return normalize(loop), normalize(parser), normalize(buffer)


def _user_stack_ok(loop, parser, buffer) -> bool:
    """A stack naming a user's variant (registry.py) that loads and that the loop takes."""
    from . import buffers as _buffers, loops, parsers as _parsers
    from .registry import VariantError, is_user_spec
    if not any(is_user_spec(v) for v in (loop, parser, buffer)):
        return False
    for reg, name in ((loops, loop), (_parsers, parser), (_buffers, buffer)):
        ok, why = reg.available(name)
        if not ok:
            raise VariantError(why)
    ok, why = loops.supports(loop, parser, buffer)
    if not ok:
        raise VariantError(why)
    return True


def experiment(loop: str = "c", parser: str = "c", buffer: str = "c", shape: str = "pipelined",
               connections: Optional[int] = None, pipeline: Optional[int] = None,
               duration: int = 2, repetitions: int = 1, head_memo: bool = False,
               warmup: Optional[int] = None, load_tool: Optional[str] = None,
               fold_runs: bool = False):
    """The bench Experiment of one lab run (ceiling + this stack, one shape)."""
    from .bench.experiment.files import parse_experiment
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {', '.join(SHAPES)}, not {shape!r}")
    loop, parser, buffer = _user_stack(loop, parser, buffer)
    stack = f"{loop}/{parser}/{buffer}"
    allowed = stacks()
    if stack not in allowed and not _user_stack_ok(loop, parser, buffer):
        raise ValueError(f"{stack} is not a stack this machine can run (the registry allows: "
                         f"{', '.join(allowed)}; or a user variant by path, e.g. parser='my_parser.py:Mine')")
    params = dict(SHAPES[shape])
    if connections is not None:
        params["connections"] = int(connections)
    if pipeline is not None:
        params["pipeline"] = int(pipeline)
    if shape == "keepalive":
        params["pipeline"] = 1
    if load_tool is not None:            # else the experiments' default
        params["load_tool"] = load_tool
    return parse_experiment({
        "name": EXPERIMENT_NAME,
        "description": f"lab panel: {stack} {shape} {params}",
        "repetitions": int(repetitions), "duration": int(duration),
        "warmup": int(warmup if warmup is not None else (0 if duration <= 2 else 1)),
        "pause": 0.2, "stacks": [stack], "head_memo": [bool(head_memo)],
        "fold_runs": [bool(fold_runs)], "peers": [],
        "shapes": [shape], "shape": {shape: params},
    })


def run(loop: str = "c", parser: str = "c", buffer: str = "c", shape: str = "pipelined",
        connections: Optional[int] = None, pipeline: Optional[int] = None, duration: int = 2,
        repetitions: int = 1, head_memo: bool = False, out=None,
        echo: Optional[Callable[[str], None]] = None, progress=False,
        quick: Optional[bool] = None, fold_runs: bool = False) -> pd.DataFrame:
    """Run the ceiling and one stack under one load; returns the rows (attrs:
    batch_id, batch_dir).  quick (default: $KOURIER_LAB_QUICK) shortens it to 1 s
    x 1 run.  A KeyboardInterrupt (kernel interrupt, Ctrl-C) stops every process
    the run started before it propagates."""
    from .bench.run.batch import run_experiment
    quick = quick_mode() if quick is None else quick
    if quick:
        duration, repetitions = 1, 1
    exp = experiment(loop, parser, buffer, shape, connections, pipeline, duration, repetitions,
                     head_memo, warmup=0 if quick else None, fold_runs=fold_runs)
    keep = procs.snapshot()
    try:
        in_main = threading.current_thread() is threading.main_thread()
        guard = procs.interruptible((signal.SIGINT,)) if in_main else _nullcontext()
        with guard:
            return run_experiment(exp, out=out, progress=progress, echo=echo or (lambda s: None),
                                  summary=False)
    finally:
        procs.stop_all(grace=3, keep=keep)       # nothing should be left; make sure


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


# ------------------------------------------------------------------ reading a parse

INFO_FIELDS = ("method", "path", "query", "version_minor", "keep_alive", "body_kind",
               "content_length", "expect_continue")


def _forms():
    from . import parsers as P
    forms = {P.FORM_ORIGIN: "origin-form (/path?query)", P.FORM_ABSOLUTE: "absolute-form (http://host/path)",
             P.FORM_AUTHORITY: "authority-form (host:port, CONNECT only)",
             P.FORM_ASTERISK: "asterisk-form (*, OPTIONS only)"}
    bodies = {P.BODY_NONE: "no body", P.BODY_LENGTH: "Content-Length body",
              P.BODY_CHUNKED: "chunked body"}
    return forms, bodies


def describe_info(info) -> pd.DataFrame:
    """The parser's hot-path tuple (p.info) with its field names and what each value means."""
    _, bodies = _forms()
    meaning = {"version_minor": lambda v: f"HTTP/1.{v}",
               "keep_alive": lambda v: "connection stays open" if v else "close after the answer",
               "body_kind": lambda v: bodies.get(v, "?"),
               "query": lambda v: "no '?' in the target" if v is None else "",
               "expect_continue": lambda v: "client waits for 100 Continue" if v else ""}
    return pd.DataFrame([{"field": f, "value": v, "meaning": meaning.get(f, lambda _v: "")(v)}
                         for f, v in zip(INFO_FIELDS, info)])


def describe_head(head) -> pd.DataFrame:
    """A RequestHead (p.head()) as field / value / meaning rows; headers left to their own table."""
    forms, bodies = _forms()
    meaning = {"target_form": lambda v: forms.get(v, "?"), "body_kind": lambda v: bodies.get(v, "?"),
               "version_minor": lambda v: f"HTTP/1.{v}",
               "head_len": lambda v: "bytes up to and including the blank line"}
    return pd.DataFrame([{"field": k, "value": v, "meaning": meaning.get(k, lambda _v: "")(v)}
                         for k, v in vars(head).items() if k != "headers"])


# ------------------------------------------------------------------ the figure

def _medians(rows: pd.DataFrame) -> pd.DataFrame:
    if rows is None or rows.empty or "req_per_s" not in rows.columns:
        return pd.DataFrame(columns=["server", "server_kind", "median", "min", "max"])
    ok = rows[(rows["status"] == "ok") & rows["req_per_s"].notna()]
    if "offered_rate" in ok.columns:
        ok = ok[ok["offered_rate"].isna()]
    g = ok.groupby(["server", "server_kind"], sort=False)["req_per_s"]
    return g.agg(["median", "min", "max"]).reset_index()


def plot_beside(rows: pd.DataFrame, stored: Optional[pd.DataFrame] = None, shape: Optional[str] = None):
    """Requests/s of this run's servers (full colour) beside a stored batch's
    (pale, same colours), median with min-max whiskers; each batch's ceiling as a
    reference line (this run's dashed, the stored one's dotted)."""
    shape = shape or (rows["shape"].iloc[0] if rows is not None and len(rows) else None)
    stored = stored if stored is not None else pd.DataFrame()
    unlike = ""
    if len(stored) and "shape" in stored.columns:
        # only runs of the same load are comparable: same shape, connections, pipeline depth
        same = stored[stored["shape"] == shape] if shape is not None else stored
        if rows is not None and len(rows):
            for col in ("connections", "pipeline"):
                if col in rows.columns and col in same.columns:
                    same = same[same[col].isin(rows[col].dropna().unique())]
        if same.empty:
            loads = stored.drop_duplicates(["shape", "connections", "pipeline"]) \
                if {"connections", "pipeline"} <= set(stored.columns) else stored.iloc[0:0]
            ran = ", ".join(f"{r['shape']} {r['connections']:.0f} x {r['pipeline']:.0f}"
                            for _, r in loads.head(4).iterrows())
            unlike = (f"stored batch {stored['batch_id'].iloc[0]} has no run of this load"
                      + (f" (it ran {ran})" if ran else ""))
        stored = same
    new, old = _medians(rows), _medians(stored)
    fig, axes = style.figure(1, 1, figsize=(9.5, 1.8 + 0.42 * max(len(new) + len(old), 3)))
    ax = axes[0][0]
    labels, y = [], 0
    new_batch = rows["batch_id"].iloc[0] if rows is not None and len(rows) else "this run"
    old_batch = stored["batch_id"].iloc[0] if len(stored) else None
    for frame, alpha, tag in ((new, 1.0, "this run"), (old, 0.4, "stored")):
        for _, r in frame[frame["server_kind"] != "ceiling"].iterrows():
            s = style.bar_style(r["server"], r["server_kind"])
            s["alpha"] = min(s.get("alpha", 1.0), alpha)
            ax.barh(y, r["median"], xerr=[[r["median"] - r["min"]], [r["max"] - r["median"]]],
                    capsize=3, error_kw={"elinewidth": 1, "ecolor": "#333333"}, **s)
            labels.append(f"{r['server']} ({tag})")
            y += 1
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels)
    ax.invert_yaxis()
    handles = []
    from matplotlib.lines import Line2D
    for frame, ls, tag, batch in ((new, "--", "this run", new_batch), (old, ":", "stored", old_batch)):
        ceil = frame[frame["server_kind"] == "ceiling"]
        if len(ceil):
            v = float(ceil["median"].iloc[0])
            style.reference_line(ax, v, "_ceiling", axis="x", text=f"ceiling ({tag})")
            ax.get_lines()[-1].set_linestyle(ls)
            handles.append(Line2D([], [], color=style.CEILING_COLOR, linestyle=ls,
                                  label=f"ceiling, {tag}: {v / 1e3:,.0f} k req/s"))
    if not labels:
        ax.text(0.5, 0.5, "no finished runs yet", ha="center", va="center", transform=ax.transAxes)
    if unlike:
        ax.text(0.99, 0.01, unlike, ha="right", va="bottom", transform=ax.transAxes, fontsize=7,
                color="#555555", wrap=True)
    ax.set_xlabel("requests/s (median, min–max)")
    ax.xaxis.set_major_formatter(__import__("matplotlib.ticker", fromlist=["x"]).FuncFormatter(
        lambda v, _p: f"{v / 1e6:g}M" if v >= 1e6 else f"{v / 1e3:g}k" if v >= 1e3 else f"{v:g}"))
    ax.grid(axis="x")
    ax.grid(axis="y", visible=False)
    if handles:
        style.legend_outside(fig, handles=handles)
    what = f"Lab run, {shape}: this run ({new_batch})" + (f" beside stored {old_batch}" if old_batch else "")
    fig.suptitle(style.title_from_rows(what, rows if rows is not None else pd.DataFrame()), fontsize=10)
    return fig


def _number(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def table(rows: pd.DataFrame) -> pd.DataFrame:
    """The columns a reader wants from a lab run, one row per run."""
    cols = ["batch_id", "server", "head_memo", "fold_runs", "shape", "corpus", "connections",
            "pipeline", "run", "status",
            "req_per_s", "cpu_us_per_req", "bottleneck", "server_cpus", "client_cpus", "note"]
    if rows is None or rows.empty:
        return pd.DataFrame(columns=cols)
    return rows[[c for c in cols if c in rows.columns]]


# ------------------------------------------------------------------ the panel

class LabPanel:
    """Widgets around `run`: the run happens on a background thread (the kernel
    stays responsive, so Stop can be pressed); Stop and a kernel interrupt raise
    procs.Interrupted in that thread, which stops every process it started."""

    def __init__(self, results=None, loop="c", parser="c", buffer="c", shape="pipelined",
                 duration: Optional[int] = None, repetitions: Optional[int] = None):
        import ipywidgets as w
        self.results = results
        self.rows = pd.DataFrame()
        self.error: Optional[str] = None
        self.thread: Optional[threading.Thread] = None
        self._stop_requested = False
        quick = quick_mode()
        allowed = [tuple(s.split("/")) for s in stacks()]
        loop, parser, buffer = _user_stack(loop, parser, buffer)
        if (loop, parser, buffer) not in allowed and _user_stack_ok(loop, parser, buffer):
            allowed.append((loop, parser, buffer))      # a user's variant by path joins the choices
        self._allowed = allowed
        pick = (loop, parser, buffer) if (loop, parser, buffer) in allowed else allowed[0]
        self.loop = w.Dropdown(description="loop", options=sorted({a[0] for a in allowed}), value=pick[0])
        self.parser = w.Dropdown(description="parser")
        self.buffer = w.Dropdown(description="buffer")
        self._refresh_choices(pick)
        self.loop.observe(lambda _c: self._refresh_choices(), names="value")
        self.parser.observe(lambda _c: self._refresh_choices(), names="value")
        self.shape = w.ToggleButtons(description="load", options=list(SHAPES), value=shape)
        self.connections = w.BoundedIntText(description="connections", min=1, max=10000,
                                            value=SHAPES[shape]["connections"])
        self.pipeline = w.BoundedIntText(description="pipeline", min=1, max=1024,
                                         value=SHAPES[shape]["pipeline"])
        self.shape.observe(self._shape_changed, names="value")
        self.head_memo = w.Checkbox(description="head memo ON (skips the parser; row says so)", value=False,
                                    indent=False)
        self.fold_runs = w.Checkbox(description="run folding ON (equal requests answered once; row says so)",
                                    value=False, indent=False)
        self.duration = w.BoundedIntText(description="seconds", min=1, max=600,
                                         value=duration or (1 if quick else 3))
        self.repetitions = w.BoundedIntText(description="runs", min=1, max=50,
                                            value=repetitions or (1 if quick else 3))
        batches = stored_batches(results)
        self.batch = w.Dropdown(description="beside", options=["(last batch)"] + batches, value="(last batch)")
        self.run_button = w.Button(description="Run", button_style="success", icon="play")
        self.stop_button = w.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.run_button.on_click(lambda _b: self.start())
        self.stop_button.on_click(lambda _b: self.stop(wait=False))
        self.progress = w.IntProgress(description="progress", min=0, max=1, value=0)
        self.status = w.HTML("<i>pick a stack and a load, then Run</i>")
        self.plot = w.Image(format="png", layout=w.Layout(max_width="680px", height="auto",
                                                          object_fit="contain"))
        self.rows_view = w.HTML()
        for box in (self.loop, self.parser, self.buffer, self.connections, self.pipeline, self.duration,
                    self.repetitions, self.batch):
            box.layout = w.Layout(width="300px")
        self.shape.style.button_width = "90px"
        controls = w.VBox(layout=w.Layout(min_width="420px", flex="0 0 auto"), children=[
            self.loop, self.parser, self.buffer, self.shape, self.connections, self.pipeline,
            self.duration, self.repetitions, self.head_memo, self.fold_runs, self.batch,
            w.HBox([self.run_button, self.stop_button]), self.progress, self.status])
        self.widget = w.VBox([w.HTML("<b>kourier_lab panel</b>: the ceiling and one stack, pinned on "
                                     "the core split; rows are stored as a batch named 'lab'"),
                              w.HBox([controls, self.plot], layout=w.Layout(flex_flow="row wrap",
                                                                            align_items="flex-start")),
                              self.rows_view])
        self.widget.add_class("kourier-lab-panel")
        self._install_sigint()
        self._draw(pd.DataFrame())

    # -- choices -------------------------------------------------------------
    def _refresh_choices(self, pick=None):
        if getattr(self, "_refreshing", False):      # setting options fires the observers again
            return
        self._refreshing = True
        try:
            self._set_choices(pick)
        finally:
            self._refreshing = False

    def _set_choices(self, pick=None):
        loop = pick[0] if pick else self.loop.value
        parsers = sorted({a[1] for a in self._allowed if a[0] == loop})
        want_p = pick[1] if pick else self.parser.value
        self.parser.options = parsers
        self.parser.value = want_p if want_p in parsers else parsers[0]
        buffers = sorted({a[2] for a in self._allowed if a[0] == loop and a[1] == self.parser.value})
        want_b = pick[2] if pick else self.buffer.value
        self.buffer.options = buffers
        self.buffer.value = want_b if want_b in buffers else buffers[0]

    def _shape_changed(self, change):
        d = SHAPES[change["new"]]
        self.connections.value, self.pipeline.value = d["connections"], d["pipeline"]
        self.pipeline.disabled = change["new"] == "keepalive"

    # -- running -------------------------------------------------------------
    def settings(self) -> dict:
        return dict(loop=self.loop.value, parser=self.parser.value, buffer=self.buffer.value,
                    shape=self.shape.value, connections=self.connections.value,
                    pipeline=self.pipeline.value, duration=self.duration.value,
                    repetitions=self.repetitions.value, head_memo=self.head_memo.value,
                    fold_runs=self.fold_runs.value)

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self) -> None:
        """What Run does: the run on a background thread, widgets updated live."""
        if self.running:
            return
        self.rows, self.error, self._stop_requested = pd.DataFrame(), None, False
        self.run_button.disabled, self.stop_button.disabled = True, False
        settings = self.settings()
        self.status.value = f"starting {settings['loop']}/{settings['parser']}/{settings['buffer']} ..."
        self.thread = threading.Thread(target=self._work, args=(settings,), name="kourier-lab-run",
                                       daemon=True)
        self.thread.start()

    def _work(self, settings: dict) -> None:
        root = _results_root(self.results)
        before = set(stored_batches(root))
        panel = self

        class Progress:                       # the tqdm-like bar run_experiment drives
            def __init__(self, total=0, **_kw):
                self.total = total
                panel.progress.max, panel.progress.value = max(1, total), 0

            def update(self, n=1):
                panel.progress.value = min(panel.progress.max, panel.progress.value + n)
                panel._refresh_rows(root, before)

            def set_postfix_str(self, s, refresh=True):
                panel.status.value = s

            def close(self):
                pass

            @staticmethod
            def write(s):
                panel.status.value = s

        keep = procs.snapshot()
        try:
            self.rows = run(**settings, out=self.results, progress=Progress, quick=False,
                            echo=lambda s: setattr(self.status, "value", s))
            self.status.value = f"done: batch {self.rows.attrs.get('batch_id')}"
        except KeyboardInterrupt:
            self._refresh_rows(root, before)
            self.status.value = (f"stopped: every process of the run is stopped; "
                                 f"{int((self.rows.get('status', pd.Series()) == 'ok').sum())} finished "
                                 f"runs kept")
        except Exception as e:                # shown in the panel, kept for the caller
            self.error = f"{type(e).__name__}: {e}"
            self.status.value = f"failed: {self.error}"
        finally:
            procs.stop_all(grace=3, keep=keep)
            self._draw(self.rows)
            self.run_button.disabled, self.stop_button.disabled = False, True

    def _refresh_rows(self, root: Path, before: set) -> None:
        new = [b for b in stored_batches(root) if b not in before]
        if not new:
            return
        try:
            rows = pd.read_parquet(root / new[0] / "rows.parquet")
        except (OSError, ValueError):
            return
        if len(rows) != len(self.rows):
            self.rows = rows
            self._draw(rows)

    def _stored(self) -> pd.DataFrame:
        mine = set(self.rows["batch_id"]) if len(self.rows) else set()
        pick = self.batch.value
        try:
            return stored_rows(None if pick == "(last batch)" else pick, self.results, exclude=mine)
        except ValueError:
            return pd.DataFrame()

    def _draw(self, rows: pd.DataFrame) -> None:
        self.plot.value = _png(plot_beside(rows, self._stored(), shape=self.shape.value))
        self.rows_view.value = table(rows).to_html(index=False, float_format=_number) if len(rows) else ""

    def stop(self, wait: bool = True, timeout: float = 60.0) -> None:
        """What Stop does (and a kernel interrupt while a run is on)."""
        if not self.running:
            return
        self._stop_requested = True
        self.status.value = "stopping: every server and load process of the run ..."
        procs.interrupt_thread(self.thread)
        if wait:
            self.thread.join(timeout)

    def wait(self, timeout: Optional[float] = None) -> pd.DataFrame:
        if self.thread is not None:
            self.thread.join(timeout)
        return self.rows

    def _install_sigint(self) -> None:
        """A kernel interrupt (SIGINT) while a run is on stops it; otherwise the
        kernel's own handler runs as before."""
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum, frame):
            if self.running:
                self.stop(wait=False)
                return
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:
                raise KeyboardInterrupt
        try:
            signal.signal(signal.SIGINT, handler)
        except ValueError:
            pass

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)


def panel(**kw) -> LabPanel:
    """The lab panel (display it: it is the cell's last expression)."""
    return LabPanel(**kw)
