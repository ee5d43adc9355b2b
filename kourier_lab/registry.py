"""One registry per component (parsers, buffers, loops).

Variants live in modules named after their language; a variant module
registers itself when imported.  Importing is lazy and per variant, so a
server that runs the Python stack never pays for importing Numba (hundreds of
MB of RSS) just because the Numba variant exists.  A variant that cannot load
on this machine (no compiler output, no numba) is recorded with the reason.
"""
import importlib
from typing import Any, Dict, List, Tuple


class Registry:
    def __init__(self, kind: str, package: str, builtins: Tuple[str, ...]):
        self.kind, self.package, self.builtins = kind, package, builtins
        self._entries: Dict[str, Any] = {}
        self._errors: Dict[str, str] = {}

    def register(self, name: str, entry: Any) -> None:
        self._entries[name] = entry

    def _load(self, name: str) -> None:
        if name in self._entries or name in self._errors or name not in self.builtins:
            return
        try:
            importlib.import_module(f"{self.package}.{name}")
        except ImportError as e:  # pragma: no cover - depends on the machine
            self._errors[name] = str(e)

    def get(self, name: str) -> Any:
        self._load(name)
        try:
            return self._entries[name]
        except KeyError:
            why = f" ({self._errors[name]})" if name in self._errors else ""
            raise ValueError(f"unknown {self.kind} {name!r}{why}; choose one of: {', '.join(self.names())}") \
                from None

    def available(self, name: str) -> Tuple[bool, str]:
        """(True, "") or (False, why) -- imports only that variant."""
        self._load(name)
        if name in self._entries:
            return True, ""
        return False, self._errors.get(name, f"unknown {self.kind} {name!r}")

    def names(self) -> List[str]:
        """Every variant that loads on this machine (imports them all)."""
        for name in self.builtins:
            self._load(name)
        return sorted(self._entries)

    def unavailable(self) -> Dict[str, str]:
        self.names()
        return dict(self._errors)
