"""Figures from result rows, in the package style (kourier_lab/style.py).

throughput.py draws what every batch writes (write_figures): requests/s
against the ceiling (plot_throughput), CPU per request, latency percentiles
and the published ratios beside the measured ones; latency.py the h2load figures
(per-request percentiles, latency against offered load).
"""
