"""What an experiment measures, before anything runs.

files.py reads experiments/*.toml into an Experiment (load_experiment; every
key documented there), targets.py turns its stacks and peers into targets
(expand_targets; what cannot run here becomes a skip reason), split.py gives
the server and the load tool their CPUs (plan_split, PROFILES), ceiling.py
builds native/ceiling.c and gives its command line, and corpora.py writes the request corpora
of the distinct, real and api shapes (`kourier-lab corpora`).
"""
from .files import Experiment, Shape, SpecError, load_experiment, parse_experiment  # noqa: F401
from .split import PROFILES, Split, plan_split  # noqa: F401
from .targets import Target, expand_targets  # noqa: F401
