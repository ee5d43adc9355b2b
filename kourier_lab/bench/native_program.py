"""Compile one C file of the repository's native/ (the ceiling, the load
generator) into the cache directory (paths.cache_dir), once per version.

The binary is named after a hash of the source and the whole compiler command,
so an edited source or a changed flag rebuilds it and nothing stale ever runs;
it is written under a temporary name and renamed, so processes building at the
same time never run half a binary.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Sequence, Type

from ..paths import cache_dir, repo_root


def compile_native(file_name: str, prefix: str, cflags: Sequence[str], libs: Sequence[str],
                   error: Type[Exception], force: bool = False) -> Path:
    """Build native/<file_name> with `cflags` and `libs` into cache_dir()/<prefix>-<hash>
    unless it is there; returns the binary.  Failures raise `error` with one line
    (a missing source or compiler, the compiler's first message)."""
    src = repo_root() / "native" / file_name
    if not src.is_file():
        raise error(f"native/{file_name} is missing (run from the repository's checkout)")
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise error(f"no C compiler (cc/gcc/clang) to build native/{file_name}; "
                    "install one (Debian: apt-get install gcc)")
    digest = hashlib.sha256(src.read_bytes() + " ".join([cc, *cflags, *libs]).encode()).hexdigest()[:16]
    out = cache_dir() / f"{prefix}-{digest}"
    if out.exists() and not force:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    r = subprocess.run([cc, *cflags, "-o", str(tmp), str(src), *libs], capture_output=True, text=True)
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        first = (r.stderr.strip().splitlines() or ["no output"])[0]
        raise error(f"building native/{file_name} failed: {first}")
    os.replace(tmp, out)
    return out
