"""Experiments across machines: the server on one host, the load tools on
others, over SSH.

hosts_table.py reads an experiment's [hosts] table; agent.py is what runs on each
host (`python -m kourier_lab.bench.hosts.agent`); remote.py drives the hosts
(sessions, clock offsets, merging the clients' figures); pair.py runs the
matrix on one host pair (run_pair); sweep.py is the entry point,
run_on_hosts, which run_experiment calls for an experiment with [hosts], and
dispatches many pairs with Dask.
"""
