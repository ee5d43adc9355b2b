"""CPU lists as the CLIs take them ("0", "0,2", "0-3")."""
import os
from typing import List


def parse_cpu_list(text: str) -> List[int]:
    """-> sorted usable CPUs; ValueError with a one-line reason otherwise."""
    cpus = []
    try:
        for part in text.split(","):
            if "-" in part:
                a, b = part.split("-")
                cpus.extend(range(int(a), int(b) + 1))
            else:
                cpus.append(int(part))
    except ValueError:
        raise ValueError(f"not a CPU list (e.g. 0 or 0,2 or 0-3): {text!r}") from None
    usable = os.sched_getaffinity(0)
    bad = sorted(set(cpus) - usable)
    if bad:
        raise ValueError(f"CPU(s) {bad} not available; this machine has {sorted(usable)}")
    return sorted(set(cpus))


def cpus_option(text: str, flag: str = "--cpus") -> List[int]:
    """A CLI's CPU-list option -> CPUs; UsageError naming the option otherwise."""
    from .errors import UsageError
    try:
        return parse_cpu_list(text)
    except ValueError as e:
        raise UsageError(f"{flag}: {e}") from None
