"""The load tools: commands and what they print, nothing measured here.

wrk.py builds wrk's command line (WrkLoad, with lua/pipeline.lua for
pipelining, browser headers and corpora) and parses its report
(parse_wrk_output); h2load.py does the same for h2load (H2loadLoad,
parse_h2load_output) and rebuilds per-request latency from its log
(latency_from_log); kourier.py builds native/loadgen.c, the lab's own load
generator and the default tool (KourierLoad, parse_loadgen_output: every
response checked, per-request latency, closed or open loop).  run/measure.py
runs them here; hosts/pair.py writes its own wrk line for client hosts.
"""
from .h2load import H2loadError, H2loadLoad, parse_h2load_output  # noqa: F401
from .kourier import KourierLoad, LoadgenError, parse_loadgen_output  # noqa: F401
from .wrk import WrkError, WrkLoad, parse_wrk_output  # noqa: F401
