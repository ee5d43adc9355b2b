"""One registry per component (parsers, buffers, loops).

Variants live in modules named after their language; a variant module
registers itself when imported.  Importing is lazy and per variant, so a
server that runs the Python stack never pays for importing Numba (hundreds of
MB of RSS) just because the Numba variant exists.  A variant that cannot load
on this machine (no compiler output, no numba) is recorded with the reason.

Besides the built-in names, a variant is named by where its code is:

    path/to/file.py:Name      a class (or factory) in a Python file
    package.module:Name       the same, imported from an installed module
    path/to/file.c:prefix     a C parser (parsers only; parsers/user_c.py)
    name                      an entry point of the group kourier_lab.<kind>s
                              (e.g. kourier_lab.parsers) of an installed package

The spec string is the variant's name everywhere (ServerConfig, rows, the
CLI), so it travels to a server's worker processes as text and is resolved
there.  `source(name)` says which code a name resolved to (path, SHA-256 of
the file), which every benchmark row records.
"""
import hashlib
import importlib
import importlib.util
import os
import re
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

USER_MODULE_PREFIX = "kourier_lab_user_"


class VariantError(ValueError):
    """A user variant that cannot be used: the message is one line saying why and what to do."""


def is_user_spec(name: str) -> bool:
    """A path or module:attribute spec rather than a registered name."""
    return ":" in name or name.endswith((".py", ".c")) or "/" in name


def _split(spec: str) -> Tuple[str, str]:
    """(file or module, attribute) of a spec; attribute "" when absent."""
    target, sep, attr = spec.rpartition(":")
    if not sep:
        return spec, ""
    return target, attr


def is_path_spec(spec: str) -> bool:
    target, _ = _split(spec)
    return target.endswith((".py", ".c")) or os.sep in target or "/" in target


def normalize(spec: str, base: Optional[str] = None) -> str:
    """A spec whose file path is absolute (relative paths are taken from `base`,
    default the current directory), so it means the same in any process."""
    if not isinstance(spec, str) or not is_user_spec(spec) or not is_path_spec(spec):
        return spec
    target, attr = _split(spec)
    path = os.path.abspath(os.path.join(base or os.getcwd(), os.path.expanduser(target)))
    return f"{path}:{attr}" if attr else path


def sha256_file(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def load_python_file(path: str, digest: str):
    """Import a user's .py file as its own module (named after its content hash,
    so an edited file is a new module, and registered in sys.modules so that
    dataclasses, pickling and the C loop's module lookup work)."""
    stem = "".join(c if c.isalnum() else "_" for c in os.path.splitext(os.path.basename(path))[0])
    modname = f"{USER_MODULE_PREFIX}{stem}_{digest[:12]}"
    mod = sys.modules.get(modname)
    if mod is not None:
        return mod
    spec = importlib.util.spec_from_file_location(modname, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException as e:
        del sys.modules[modname]
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        where = ""
        tb = e.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == path:
                where = f" (line {tb.tb_lineno})"
            tb = tb.tb_next
        raise VariantError(f"{path}: importing it raised {type(e).__name__}: {e}{where}") from None
    return mod


class Registry:
    """Built-in variants by name, entry points, and user variants by spec.

    adapt(obj, spec) turns what a user spec names (a class, a module...) into
    this registry's entry (the factory the component's create() calls), or
    raises VariantError naming what is missing.  loaders maps a file suffix
    (".c") to a function(path, attr, digest) -> entry for files that are not
    Python.
    """

    def __init__(self, kind: str, package: str, builtins: Tuple[str, ...],
                 adapt: Optional[Callable[[Any, str], Any]] = None,
                 loaders: Optional[Dict[str, Union[str, Callable[[str, str, str], Any]]]] = None,
                 recheck_s: float = 0.0):
        self.kind, self.package, self.builtins = kind, package, builtins
        # > 0: a user's file is looked at again at most every recheck_s seconds
        # (buffers are made per connection; parsers and loops once per worker,
        # and re-read on every create so that an edited file takes effect)
        self.recheck_s = recheck_s
        self.group = f"kourier_lab.{kind}s"
        self.adapt = adapt or (lambda obj, spec: obj)
        self.loaders = dict(loaders or {})
        self._entries: Dict[str, Any] = {}
        self._errors: Dict[str, str] = {}
        self._sources: Dict[str, Dict[str, str]] = {}
        self._user: Dict[str, Tuple[str, Any]] = {}       # spec -> (digest, entry)
        self._stat: Dict[str, Tuple[int, int, str]] = {}  # path -> (mtime_ns, size, digest)
        self._recent: Dict[str, Tuple[float, Any]] = {}   # spec -> (recheck after, entry)
        self._entry_points = None


    def _loader(self, suffix: str) -> Callable[[str, str, str], Any]:
        """A loader may be named "module:function", imported only when a file of
        its suffix is asked for (as the built-in variants are imported by name)."""
        loader = self.loaders[suffix]
        if isinstance(loader, str):
            module, _, func = loader.partition(":")
            loader = self.loaders[suffix] = getattr(importlib.import_module(module), func)
        return loader
    def register(self, name: str, entry: Any) -> None:
        self._entries[name] = entry

    # -- entry points of installed packages ---------------------------------
    def entry_points(self) -> Dict[str, Any]:
        if self._entry_points is None:
            from importlib.metadata import entry_points
            try:
                eps = entry_points(group=self.group)
            except Exception:  # pragma: no cover - a broken installed distribution
                eps = ()
            self._entry_points = {ep.name: ep for ep in eps if ep.name not in self.builtins}
        return self._entry_points

    def _load(self, name: str) -> None:
        if name in self._entries or name in self._errors:
            return
        if name in self.builtins:
            try:
                importlib.import_module(f"{self.package}.{name}")
            except ImportError as e:  # pragma: no cover - depends on the machine
                self._errors[name] = str(e)
            return
        ep = self.entry_points().get(name)
        if ep is None:
            return
        try:
            obj = ep.load()
            self._entries[name] = self.adapt(obj, f"{ep.value} (entry point {name!r})")
            self._sources[name] = _module_source(ep.value, ep.value.partition(":")[0])
        except Exception as e:  # an installed package's problem is its own row, not a crash
            self._errors[name] = f"entry point {self.group}:{name} = {ep.value}: {type(e).__name__}: {e}"

    # -- user variants by spec ------------------------------------------------
    def _resolve_user(self, spec: str):
        """(entry, source) for a path or module spec; VariantError when it cannot be used."""
        target, attr = _split(spec)
        what = f"{self.kind} {spec!r}"
        if is_path_spec(spec):
            path = os.path.abspath(os.path.expanduser(target))
            if not os.path.isfile(path):
                raise VariantError(f"{what}: no such file {path}")
            # a stat per create() (buffers are made per connection), a hash only
            # when the file changed
            st = os.stat(path)
            seen = self._stat.get(path)
            if seen is not None and seen[:2] == (st.st_mtime_ns, st.st_size):
                digest = seen[2]
            else:
                digest = sha256_file(path)
                self._stat[path] = (st.st_mtime_ns, st.st_size, digest)
            cached = self._user.get(spec)
            if cached is not None and cached[0] == digest:
                return cached[1], self._sources[spec]
            suffix = os.path.splitext(path)[1]
            if suffix in self.loaders:
                entry = self._loader(suffix)(path, attr, digest)
            elif suffix == ".py":
                if not attr:
                    raise VariantError(f"{what}: name the class after a colon, e.g. {target}:MyParser")
                mod = load_python_file(path, digest)
                obj = getattr(mod, attr, None)
                if obj is None:
                    defined = sorted(k for k, v in vars(mod).items()
                                     if isinstance(v, type) and v.__module__ == mod.__name__)
                    raise VariantError(f"{what}: {os.path.basename(path)} defines no {attr!r} "
                                       f"(its classes: {', '.join(defined) or 'none'})")
                entry = self.adapt(obj, spec)
            else:
                kinds = ", ".join(sorted({".py", *self.loaders}))
                raise VariantError(f"{what}: a {self.kind} file must end with {kinds}")
            source = {"spec": spec, "path": path, "sha256": digest}
        else:
            if not attr:
                raise VariantError(f"{what}: name the object after a colon, e.g. {target}:MyClass")
            try:
                mod = importlib.import_module(target)
            except ModuleNotFoundError as e:
                raise VariantError(f"{what}: no module named {e.name!r} (a file path needs .py; "
                                   f"a module must be importable)") from None
            except Exception as e:
                raise VariantError(f"{what}: importing {target} raised {type(e).__name__}: {e}") from None
            obj = getattr(mod, attr, None)
            if obj is None:
                raise VariantError(f"{what}: module {target} has no attribute {attr!r}")
            entry = self.adapt(obj, spec)
            source = _module_source(spec, target)
            digest = source["sha256"]
        self._user[spec] = (digest, entry)
        self._sources[spec] = source
        return entry, source

    # -- the registry's questions ----------------------------------------------
    def get(self, name: str) -> Any:
        recent = self._recent.get(name)
        if recent is not None and time.monotonic() < recent[0]:
            return recent[1]        # resolved a moment ago: no file system calls
        if isinstance(name, str) and is_user_spec(name) and name not in self.builtins:
            entry = self._resolve_user(name)[0]
            if self.recheck_s:
                self._recent[name] = (time.monotonic() + self.recheck_s, entry)
            return entry
        self._load(name)
        try:
            return self._entries[name]
        except KeyError:
            why = f" ({self._errors[name]})" if name in self._errors else ""
            hint = ("; or a path/to/file.py:Class, a package.module:Class"
                    + (", a path/to/file.c:prefix" if self.loaders else ""))
            raise VariantError(f"unknown {self.kind} {name!r}{why}; choose one of: "
                               f"{', '.join(self.names())}{hint}") from None

    def available(self, name: str) -> Tuple[bool, str]:
        """(True, "") or (False, why) -- imports only that variant."""
        if is_user_spec(name) and name not in self.builtins:
            try:
                self._resolve_user(name)
            except VariantError as e:
                return False, str(e)
            return True, ""
        self._load(name)
        if name in self._entries:
            return True, ""
        return False, self._errors.get(name, f"unknown {self.kind} {name!r}")

    def source(self, name: str) -> Dict[str, str]:
        """{"spec", "path", "sha256"} of the code a name resolves to: the user's
        file, the entry point's module, or the built-in variant's module."""
        if is_user_spec(name) and name not in self.builtins:
            return dict(self._resolve_user(name)[1])
        if name not in self._sources and name in self.builtins:
            # found, not imported: recording a row's source must not load Numba
            found = importlib.util.find_spec(f"{self.package}.{name}")
            path = (found.origin if found is not None else "") or ""
            self._sources[name] = {"spec": name, "path": _package_relative(path),
                                   "sha256": sha256_file(path) if path else ""}
        if name not in self.builtins:
            self._load(name)        # an entry point records its source when loaded
        return dict(self._sources.get(name, {"spec": name, "path": "", "sha256": ""}))

    def names(self) -> List[str]:
        """Every registered variant that loads on this machine (imports them all):
        the built-ins and the installed entry points."""
        for name in (*self.builtins, *self.entry_points()):
            self._load(name)
        return sorted(self._entries)

    def unavailable(self) -> Dict[str, str]:
        self.names()
        return dict(self._errors)


def _package_relative(path: str) -> str:
    """A built-in module's path from the repository root (no machine paths in rows)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.abspath(path)
    return os.path.relpath(path, root) if path.startswith(root + os.sep) else path


def _module_source(spec: str, module: str) -> Dict[str, str]:
    mod = sys.modules.get(module)
    path = getattr(mod, "__file__", None) or ""
    return {"spec": spec, "path": path, "sha256": sha256_file(path) if path and os.path.isfile(path) else ""}


def require_methods(obj: Any, what: str, methods: Tuple[str, ...], interface: str) -> None:
    """VariantError naming the first method of the interface that obj lacks."""
    for m in methods:
        if not callable(getattr(obj, m, None)):
            raise VariantError(f"{what} has no method {m}() (the {interface} interface: "
                               f"{', '.join(methods)})")


_NAME = re.compile(r"[a-z0-9_-]+")
_FILE_SPEC = re.compile(r"[^:]+\.(?:py|c)(?::[A-Za-z_]\w*)?")
_MODULE_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def _component_ok(text: str) -> bool:
    return bool(_NAME.fullmatch(text) or _MODULE_SPEC.fullmatch(text) or _FILE_SPEC.fullmatch(text))


def split_stack(text: str) -> Optional[Tuple[str, str, str]]:
    """"loop/parser/buffer" -> (loop, parser, buffer), where each part is a
    name, a module:Name or a file spec whose path may itself contain "/"
    ("c/experiments/naive.py:Naive/c").  None when no split (or more than one)
    gives three valid parts."""
    cuts = [i for i, ch in enumerate(text) if ch == "/"]
    found = []
    for a in range(len(cuts)):
        for b in range(a + 1, len(cuts)):
            parts = (text[:cuts[a]], text[cuts[a] + 1:cuts[b]], text[cuts[b] + 1:])
            if all(parts) and all(_component_ok(p) for p in parts):
                found.append(parts)
    return found[0] if len(found) == 1 else None


def label(spec: str) -> str:
    """A short name for a variant: a file spec as its file name (and :Name)."""
    if not isinstance(spec, str) or not is_user_spec(spec) or not is_path_spec(spec):
        return spec
    target, attr = _split(spec)
    return os.path.basename(target) + (f":{attr}" if attr else "")
