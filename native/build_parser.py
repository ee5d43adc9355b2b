"""cffi builder (out-of-line API mode) for kourier_lab._native_parser.

setup.py collects this file through `cffi_modules` ("native/build_parser.py:ffibuilder").
For development, build in place (the .so lands inside kourier_lab/):

    .venv/bin/python native/build_parser.py

The cdef is taken from the headers themselves (the KL_CDEF_BEGIN/KL_CDEF_END
blocks of kourier_lab.h and parser.h, plus the kl_* prototypes), so the layout
is written down once.
"""
import os
import sys

from cffi import FFI

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cffi_headers import cdef_from_header  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
import gen_tables  # noqa: E402

CFLAGS = ["-O3", "-Wall", "-Wextra", "-std=gnu11", "-fno-strict-aliasing"]


def make_builder(absolute_paths: bool = False) -> FFI:
    """The builder; setuptools runs from the repository root and wants relative
    source paths, ffi.compile(tmpdir=...) changes directory and needs absolute ones."""
    gen_tables.ensure()
    src = os.path.join(HERE, "parser.c")
    builder = FFI()
    builder.cdef(cdef_from_header(os.path.join(HERE, "kourier_lab.h")))
    builder.cdef(cdef_from_header(os.path.join(HERE, "parser.h")))
    builder.set_source(
        "kourier_lab._native_parser",
        '#include "parser.h"\n',
        sources=[src if absolute_paths else os.path.relpath(src, ROOT)],
        include_dirs=[HERE if absolute_paths else os.path.relpath(HERE, ROOT)],
        depends=[os.path.join(HERE, f) for f in ("parser.h", "kourier_lab.h", "kl_tables.h")]
        if absolute_paths else [],
        extra_compile_args=CFLAGS,
    )
    return builder


ffibuilder = make_builder()

if __name__ == "__main__":
    build_dir = os.path.join(HERE, "build")
    os.makedirs(build_dir, exist_ok=True)
    so = make_builder(absolute_paths=True).compile(tmpdir=build_dir, verbose=False)
    # compile() leaves the .so under the build dir; move it next to the package
    dest = os.path.join(ROOT, "kourier_lab", os.path.basename(so))
    os.replace(so, dest)
    print(os.path.relpath(dest, ROOT))
