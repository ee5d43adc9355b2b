"""Where the time goes, inside one stack or one component.

stack.py is `kourier-lab profile` (stage counters, syscalls, flame graphs,
instructions per request under a bench load); flame.py folds `perf script`
output and draws the SVG; instructions.py counts a parser's instructions per
request with callgrind; micro.py is `kourier-lab micro`, the in-process
microbenchmarks of parsers, buffers and timers (run_micro).
"""
