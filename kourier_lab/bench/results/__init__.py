"""Results: what a batch leaves on disk and what is read from it.

store.py writes and reads the rows (write_rows, load_results, load_batch),
summary.py makes the summary table (summarize, format_summary), bottleneck.py
says what limited a run, findings.py turns numbers into sentences with their
conditions, and report.py is what `bench` and `report` print (summary_text).
"""
from .bottleneck import classify_row, saturated_side  # noqa: F401
from .report import summary_text  # noqa: F401
from .store import load_batch, load_results, new_batch_dir, to_frame, write_rows  # noqa: F401
from .summary import format_summary, identical_saves, summarize  # noqa: F401
