"""Results: rows on disk (store), the summary table (summary), what limited a run
(bottleneck), conclusions drawn from the numbers (findings), and the printed report."""
from .bottleneck import classify_row, saturated_side  # noqa: F401
from .report import summary_text  # noqa: F401
from .store import load_batch, load_results, new_batch_dir, to_frame, write_rows  # noqa: F401
from .summary import format_summary, identical_saves, summarize  # noqa: F401
