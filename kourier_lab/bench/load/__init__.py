"""The load tools: commands and what they print, nothing measured here.

wrk.py builds wrk's command line (WrkLoad, with lua/pipeline.lua for
pipelining, browser headers and corpora) and parses its report
(parse_wrk_output); h2load.py does the same for h2load (H2loadLoad,
parse_h2load_output) and rebuilds per-request latency from its log
(latency_from_log).  run/measure.py runs them here; hosts/pair.py writes its
own wrk line for client hosts.
"""
from .h2load import H2loadError, H2loadLoad, parse_h2load_output  # noqa: F401
from .wrk import WrkError, WrkLoad, parse_wrk_output  # noqa: F401
