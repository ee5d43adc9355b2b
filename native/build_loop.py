"""cffi builder (out-of-line API mode) for kourier_lab._native_loop: the C ring
buffer (ringbuffer.c), the C event loop (loop.c) and the C parser (parser.c,
compiled in so the loop calls kl_parse_head directly, without a crossing).

setup.py collects this file through `cffi_modules` ("native/build_loop.py:ffibuilder").
For development, build in place (the .so lands inside kourier_lab/):

    .venv/bin/python native/build_loop.py

The cdef is read from the headers (the KL_CDEF_BEGIN/KL_CDEF_END blocks of
kourier_lab.h and loop.h plus the kl_* prototypes after them), so every layout
is written down once.  The Python callbacks are `extern "Python+C"`: loop.c,
a separate translation unit, calls them.
"""
import os
import sys

from cffi import FFI

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cffi_headers import cdef_from_header  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CFLAGS = ["-O3", "-Wall", "-Wextra", "-std=gnu11", "-fno-strict-aliasing"]
LDFLAGS = []


def _have_liburing():
    """liburing's header and library on this machine (Debian: liburing-dev):
    the io_uring driver (loop_uring.c) is compiled in only then."""
    import tempfile
    from distutils.ccompiler import new_compiler
    from distutils.errors import CompileError, LinkError
    cc = new_compiler()
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write("#include <liburing.h>\nint main(void) { struct io_uring r; "
                    "return io_uring_queue_init(1, &r, 0); }\n")
        try:
            objs = cc.compile([src], output_dir=tmp)
            cc.link_executable(objs, os.path.join(tmp, "probe"), libraries=["uring"])
        except (CompileError, LinkError):
            return False
    return True


HAVE_URING = os.environ.get("KOURIER_LAB_NO_URING") is None and _have_liburing()
# --sanitize DIR: an ASan + UBSan build of the whole native server (loop.c,
# ringbuffer.c, parser.c) written into DIR (a copy of the kourier_lab package,
# tests/native/test_native_server_sanitized.py), never over the regular build.  The
# Python host then needs LD_PRELOAD of libasan.
SANITIZE = None
if "--sanitize" in sys.argv:
    SANITIZE = sys.argv[sys.argv.index("--sanitize") + 1]
    SAN = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
    CFLAGS = ["-O1", "-g", "-Wall", "-std=gnu11", "-fno-strict-aliasing"] + SAN
    LDFLAGS = SAN
LIBRARIES = []
if HAVE_URING:
    CFLAGS.append("-DKL_HAVE_URING")
    LIBRARIES.append("uring")

CALLBACKS = """
extern "Python+C" int kl_py_batch(void *handle, kl_batch *batch);
extern "Python+C" int kl_py_parse_head(void *handle, uint64_t gen, const uint8_t *base, size_t end,
                                       size_t pos, kl_request *req);
extern "Python+C" int64_t kl_py_parse_chunked(void *handle, uint8_t *base, size_t end, size_t pos,
                                              int64_t *body_len);
extern "Python+C" void kl_py_signals(void *handle);
"""


def _sources(absolute=False):
    # setuptools wants paths relative to setup.py; ffibuilder.compile() runs the
    # compiler inside its tmpdir, so the dev build passes absolute paths
    srcs = [os.path.join(HERE, s) for s in ("ringbuffer.c", "loop.c", "loop_epoll.c", "loop_uring.c", "parser.c")]
    return srcs if absolute else [os.path.relpath(s, os.getcwd()) for s in srcs]


def _ensure_tables():
    # parser.c includes the generated character-class tables
    sys.path.insert(0, HERE)
    try:
        import gen_tables
        gen_tables.ensure()
    finally:
        sys.path.remove(HERE)


_ensure_tables()

ffibuilder = FFI()
ffibuilder.cdef(cdef_from_header(os.path.join(HERE, "kourier_lab.h")))
ffibuilder.cdef(cdef_from_header(os.path.join(HERE, "loop.h")))
ffibuilder.cdef(CALLBACKS)


def _set_source(absolute=False):
    ffibuilder.set_source(
        "kourier_lab._native_loop",
        '#include "loop.h"\n',
        sources=_sources(absolute),
        include_dirs=[HERE],
        extra_compile_args=CFLAGS,
        extra_link_args=LDFLAGS,
        libraries=LIBRARIES,
    )


_set_source()

if __name__ == "__main__":
    build_dir = os.path.join(HERE, "build", "sanitize" if SANITIZE else "")
    os.makedirs(build_dir, exist_ok=True)
    del ffibuilder._assigned_source
    _set_source(absolute=True)
    so = ffibuilder.compile(tmpdir=build_dir, verbose="-v" in sys.argv)
    dest = os.path.join(SANITIZE or os.path.join(ROOT, "kourier_lab"), os.path.basename(so))
    os.replace(so, dest)
    print(dest if SANITIZE else os.path.relpath(dest, ROOT))
