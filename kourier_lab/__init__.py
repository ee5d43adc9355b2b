"""kourier_lab: a performance research workbench for HTTP/1.1 servers.

Three components (parsers, buffers, loops), each in pure Python, Numba and C,
swappable inside one real server; see README.md and the notebooks.
"""
__version__ = "0.1.0"


def check(parser=None, buffer=None, loop=None, **kwargs):
    """Grade a variant ("file.py:Class", "module:Class" or a name) with the contract
    and strict suites: a DataFrame, one row per test and case (kourier_lab.grading)."""
    from .grading import check as _check
    return _check(parser=parser, buffer=buffer, loop=loop, **kwargs)
