"""The experiments notebook 03 runs, as package functions (the notebook only
calls them): which stacks, which shapes, and the head-memo comparison.

Every request differs in the main shape (`distinct`, a corpus: bench/experiment/corpora.py);
the post's identical pipelined requests run beside it, so each stack's
distinct/identical ratio says what identical requests save it."""
from __future__ import annotations

from typing import List

from ..experiment.files import Experiment, parse_experiment

# the natural stacks first, then the crossings (a parser or buffer of another language)
EVENT_LOOP_STACKS = ["python/python/python", "asyncio/python/python", "numba/numba/numba", "c/c/c",
                     "python/c/c", "c/python/c", "c/numba/c"]
QUICK_STACKS = ["python/python/python", "c/c/c", "c/python/c"]
CROSSING_STACKS = ("c/c/c", "c/numba/c", "c/python/c")


def runnable_stacks() -> set:
    from ... import loops
    return {"/".join(c) for c in loops.combinations()}


def event_loop_stacks(quick: bool) -> List[str]:
    """The stacks notebook 03 runs here: every one when not quick, three in quick mode."""
    runnable = runnable_stacks()
    return [s for s in (QUICK_STACKS if quick else EVENT_LOOP_STACKS) if s in runnable]


def event_loops_experiment(stacks: List[str]) -> Experiment:
    return parse_experiment({
        "name": "event_loops",
        "description": "each loop with each parser, distinct, pipelined and keep-alive, vs the ceiling",
        "stacks": stacks,
        "shapes": ["distinct", "pipelined", "keepalive"],
        "repetitions": 3,
        "duration": 3,
        "shape": {"distinct": {"connections": 64, "pipeline": 256},
                  "pipelined": {"connections": 64, "pipeline": 256}},
    })


def crossing_experiment() -> Experiment:
    """The C loop with each parser, head memo off (every request parsed) and
    on, with every request different (where the memo never hits) and with the
    post's identical requests (where it always does)."""
    runnable = runnable_stacks()
    return parse_experiment({
        "name": "event_loops_head_memo",
        "description": "the C loop with each parser, head memo off (every request parsed) and on",
        "stacks": [s for s in CROSSING_STACKS if s in runnable],
        "head_memo": [False, True],
        "shapes": ["distinct", "pipelined"],
        "repetitions": 3,
        "duration": 3,
        "shape": {"distinct": {"connections": 64, "pipeline": 256},
                  "pipelined": {"connections": 64, "pipeline": 256}},
    })
