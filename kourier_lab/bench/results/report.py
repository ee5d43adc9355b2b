"""What `bench` and `report` print: the summary table and the findings drawn from it."""
from __future__ import annotations

import pandas as pd

from .findings import identical_gains
from .summary import format_summary, summarize


def summary_text(df: pd.DataFrame) -> str:
    """What `bench` and `report` print: the summary table, then what identical
    requests save each server (findings.identical_gains) when both shapes ran."""
    summary = summarize(df)
    text = format_summary(summary)
    quick = bool(df["quick"].fillna(False).any()) if "quick" in df.columns and len(df) else False
    gains = identical_gains(summary, quick=quick) if not summary.empty else []
    return text + ("\n\n" + "\n".join(gains) if gains else "")
