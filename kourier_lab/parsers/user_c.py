"""A user's C parser: `--parser path/to/file.c:prefix`.

The file defines the parser signature of native/kourier_lab.h under its own
prefix (`#include "kourier_lab.h"`: the request table, the limits):

    int     prefix_parse_head(const uint8_t *buf, size_t len, const kl_limits *limits,
                              kl_request *req);
    int64_t prefix_parse_chunked(uint8_t *buf, size_t len, const kl_limits *limits,
                                 int64_t *body_len);     /* optional */

with the semantics of kl_parse_head / kl_parse_chunked (kourier_lab.h,
parsers/__init__.py).  Without prefix_parse_chunked the built-in C chunked
decoder is used (and said so in the variant's source).  The prefix defaults
to the file's stem.

It is compiled on first use with cffi into a cache directory keyed by the
SHA-256 of the file, the header and the flags ($KOURIER_LAB_CACHE, default
~/.cache/kourier_lab/c_parsers), so each worker process of a server just
loads the shared object.  A compiler error is a VariantError whose message is
the compiler's first error line (the whole output is on .details).

From Python the parser is a CParser (parsers/c.py) whose parse_head calls the
user's function; the C loop calls the user's function directly through its
function-pointer hook (native_entry_points()), as it calls a Numba @cfunc.
"""
import hashlib
import importlib.machinery
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile

from ..http.limits import DEFAULT_LIMITS
from ..registry import VariantError
from .request_table import parse_heads_by_head

CFLAGS = ["-O2", "-std=gnu11", "-Wall", "-fno-strict-aliasing"]


class CompileError(VariantError):
    """The C compiler refused the file; .details has its whole output."""

    def __init__(self, message, details=""):
        super().__init__(message)
        self.details = details


def _native_dir() -> str:
    from ..paths import repo_root
    d = os.path.join(str(repo_root()), "native")
    if not os.path.isfile(os.path.join(d, "kourier_lab.h")):
        raise VariantError("a C parser needs native/kourier_lab.h from a kourier_lab checkout "
                           "(run from the repository, or pip install -e it)")
    return d


def cache_dir() -> str:
    return os.environ.get("KOURIER_LAB_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "kourier_lab", "c_parsers")


def _defines(source: str, name: str) -> bool:
    return re.search(rf"\b{re.escape(name)}\s*\(", source) is not None


def _first_error(output: str, path: str) -> str:
    for line in output.splitlines():
        if re.search(r":\d+(:\d+)?: (fatal )?error: ", line):
            return line.strip()
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    return lines[0] if lines else "the compiler failed without a message"


def _compile(path, prefix, has_chunked, native, out_dir, modname):
    """Build the cffi extension module into out_dir; CompileError on failure."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise VariantError("a C parser needs a C compiler (cc/gcc not found on PATH)")
    # the compiler's own words first, without cffi's wrapping around them
    check = subprocess.run([cc, "-fsyntax-only", *CFLAGS, "-I", native, path],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if check.returncode:
        text = check.stdout.decode(errors="replace")
        raise CompileError(f"{path}: does not compile: {_first_error(text, path)}", text)
    sys.path.insert(0, native)
    try:
        from cffi import FFI
        from cffi_headers import cdef_from_header
    finally:
        sys.path.remove(native)
    protos = [f"int {prefix}_parse_head(const uint8_t *buf, size_t len, const kl_limits *limits, "
              f"kl_request *req);"]
    if has_chunked:
        protos.append(f"int64_t {prefix}_parse_chunked(uint8_t *buf, size_t len, const kl_limits *limits, "
                      f"int64_t *body_len);")
    builder = FFI()
    builder.cdef(cdef_from_header(os.path.join(native, "kourier_lab.h"), prototypes=False))
    builder.cdef("\n".join(protos))
    builder.set_source(modname, '#include "kourier_lab.h"\n' + "\n".join(protos) + "\n",
                       sources=[path], include_dirs=[native], extra_compile_args=CFLAGS)
    with tempfile.TemporaryDirectory(prefix="kl-cparser-") as tmp:
        try:
            so = builder.compile(tmpdir=tmp, verbose=False)
        except Exception as e:  # a link error or the like: cffi's message names it
            raise CompileError(f"{path}: building it failed: {' '.join(str(e).split())[:300]}", str(e)) \
                from None
        os.makedirs(out_dir, exist_ok=True)
        dest = os.path.join(out_dir, os.path.basename(so))
        os.replace(so, dest)          # atomic: concurrent workers see a whole file or none
    return dest


def _import_so(so, modname):
    loader = importlib.machinery.ExtensionFileLoader(modname, so)
    spec = importlib.util.spec_from_file_location(modname, so, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    sys.modules[modname] = mod
    return mod


def load_c_parser(path, attr, digest):
    """The registry's loader for .c files: factory(limits) -> parser."""
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    prefix = attr or stem
    if not re.fullmatch(r"[A-Za-z_]\w*", prefix):
        raise VariantError(f"parser {path}:{attr}: {prefix!r} is not a C identifier prefix")
    with open(path, encoding="utf-8", errors="replace") as f:
        source = f.read()
    if not _defines(source, f"{prefix}_parse_head"):
        raise VariantError(f"parser {path}:{prefix}: defines no {prefix}_parse_head(const uint8_t *buf, "
                           f"size_t len, const kl_limits *limits, kl_request *req) (see native/kourier_lab.h)")
    has_chunked = _defines(source, f"{prefix}_parse_chunked")
    native = _native_dir()
    with open(os.path.join(native, "kourier_lab.h"), "rb") as f:
        header = f.read()
    key = hashlib.sha256(b"\0".join([digest.encode(), header, " ".join(CFLAGS).encode(), prefix.encode(),
                                     sys.implementation.cache_tag.encode()])).hexdigest()[:16]
    modname = f"_kl_user_{prefix}_{key}"
    mod = sys.modules.get(modname)
    if mod is None:
        out_dir = os.path.join(cache_dir(), key)
        suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
        so = os.path.join(out_dir, modname + suffix)
        if not os.path.isfile(so):
            so = _compile(path, prefix, has_chunked, native, out_dir, modname)
        mod = _import_so(so, modname)
    ufi, ulib = mod.ffi, mod.lib
    head_fn = getattr(ulib, f"{prefix}_parse_head")
    chunked_fn = getattr(ulib, f"{prefix}_parse_chunked") if has_chunked else None

    def factory(limits=DEFAULT_LIMITS):
        return UserCParser(limits, ufi, ulib, head_fn, chunked_fn, f"{prefix}_parse_head", prefix)
    factory(DEFAULT_LIMITS)      # a layout mismatch shows now, not during a request
    return factory


def _make_class():
    from .c import CParser, ffi as cffi_c, lib as clib

    class UserCParser(CParser):
        """A CParser whose head parse is the user's C function (the table and its
        readers are CParser's: the layout is kourier_lab.h's for both)."""

        def __init__(self, limits, ufi, ulib, head_fn, chunked_fn, head_name, prefix):
            super().__init__(limits)
            self.name = f"c:{prefix}"
            self._ufi, self._head_fn, self._chunked_fn = ufi, head_fn, chunked_fn
            ureq = ufi.cast("kl_request *", cffi_c.cast("uintptr_t", self._req))
            ulim = ufi.cast("kl_limits *", cffi_c.cast("uintptr_t", self._lim))
            self._ulim = ulim
            from_buffer = ufi.from_buffer
            u8 = "uint8_t[]"
            this = self

            def parse_head(buf, start=0, end=None):
                size = len(buf)
                if end is None:
                    end = size
                if not 0 <= start <= end <= size:
                    raise ValueError(f"bad span [{start}, {end}) of a {size}-byte buffer")
                n = head_fn(from_buffer(u8, buf) + start, end - start, ulim, ureq)
                this._info = None
                if n > 0:
                    this._buf, this._start, this._n = buf, start, n
                return n

            self.parse_head = parse_head
            # the batch protocol over parse_head (the user's file has no batch entry)
            self.parse_heads = lambda buf, start=0, end=None, max_count=None: parse_heads_by_head(
                this, buf, start, len(buf) if end is None else end, max_count)
            head_addr = int(ufi.cast("uintptr_t", ufi.addressof(ulib, head_name)))
            chunked_addr = (int(ufi.cast("uintptr_t", ufi.addressof(ulib, f"{prefix}_parse_chunked")))
                            if chunked_fn is not None
                            else int(cffi_c.cast("uintptr_t", cffi_c.addressof(clib, "kl_parse_chunked"))))
            self._entry = (head_addr, chunked_addr)

        def native_entry_points(self):
            """(head, chunked) addresses with kl_parse_head / kl_parse_chunked's
            signatures, for the C loop's function-pointer hook."""
            return self._entry

        def parse_chunked(self, buf, start, end=None):
            if self._chunked_fn is None:
                return super().parse_chunked(buf, start, end)
            if end is None:
                end = len(buf)
            # the user's function compacts in place: give it a copy
            work = self._ufi.new("uint8_t[]", bytes(buf[start:end]) or b"\0")
            body_len = self._ufi.new("int64_t *")
            n = self._chunked_fn(work, end - start, self._ulim, body_len)
            if n > 0:
                return n, self._ufi.buffer(work, body_len[0])[:]
            return n, None

    return UserCParser


class _Lazy:
    cls = None


def UserCParser(*args):
    if _Lazy.cls is None:
        _Lazy.cls = _make_class()
    return _Lazy.cls(*args)
