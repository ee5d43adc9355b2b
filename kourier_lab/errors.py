"""Errors shared by every command."""


class UsageError(Exception):
    """A bad argument or input file: printed as one line naming the problem, exit 2."""
