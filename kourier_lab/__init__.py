"""kourier_lab: a performance research workbench for HTTP/1.1 servers.

Three components (parsers, buffers, loops), each in pure Python, Numba and C,
swappable inside one real server; see README.md and the notebooks.
"""
__version__ = "0.1.0"
