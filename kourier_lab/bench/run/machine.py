"""What every row records about where and with what it was measured."""
from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
from typing import Dict

from ...paths import repo_root


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "Hardware", "Processor")) and ":" in line:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit() -> str:
    """HEAD of the checkout the package runs from, '+dirty' when tracked files changed."""
    root = repo_root()
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=20)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@functools.lru_cache(maxsize=1)
def machine_info() -> Dict[str, object]:
    return {
        "machine_cpu_model": cpu_model(),
        "machine_logical_cpus": os.cpu_count() or 0,
        "machine_usable_cpus": len(os.sched_getaffinity(0)),
        "machine_kernel": platform.release(),
        "machine_hostname": socket.gethostname(),
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_executable": os.path.basename(sys.executable),
    }
