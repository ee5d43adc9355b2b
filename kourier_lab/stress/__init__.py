"""Many connections, memory and robustness (issue 7).

    kourier-lab memory experiments/memory.toml [--quick]    # RSS/VmPeak per step, 1 k .. 500 k
    kourier-lab soak [--duration 120] [--stacks c/c/c]      # mixed load, RSS and fds sampled
    kourier-lab hostile [--stacks c/c/c] [--quick]          # server CPU per flood, trickle, tiny chunks

    from kourier_lab.stress import memory, soak, stress_plots
    df = memory.run_memory("experiments/memory.toml", quick=True, figures=True)
    rows = soak.run_soak(["c/c/c"], duration=60)

Modules:
  loadgen      one client process: N connections bound to source addresses
               across 127.0.0.0/8 (Debian's wrk lacks -b), keep-alive requests at
               a fixed total rate, latency histogram; driven over stdin/stdout
  connections  ConnectionLoad (several loadgen processes as one load), descriptor
               counts and the limits that cap a step (RLIMIT_NOFILE, file table,
               a peer's own cap), what was raised
  memory       the memory experiment: spec (experiments/memory.toml), one fresh
               server per step, rows through kourier_lab.bench.results.store
  soak         native stacks under mixed load (pipelined, keep-alive, new
               connections, malformed), RSS and descriptors once a second
  hostile      the CPU each stack spends on input built to cost it (floods,
               1-byte trickles, tiny chunks), one row per stack, input and run
  stress_plots RSS, RSS per connection, VmPeak beside the post's; the soak curves
  cli          the `memory`, `soak` and `hostile` subcommands

The hostile-client cases that check behaviour rather than cost (slowloris,
slow readers, floods, resets, half-closed sockets, SIGKILLed workers) are
tests: tests/server/test_hostile.py.
"""
