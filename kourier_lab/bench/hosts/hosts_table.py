"""The `[hosts]` table of an experiment: where the server and the load tools run.

    [hosts]
    server = "ssh://root@bench-server:22"        # or "local" (this machine)
    clients = ["ssh://root@bench-client1", "ssh://root@bench-client2"]
    address = "192.0.2.10"       # where the clients reach the server (default: the server's host)
    identity = "~/.ssh/id_ed25519"   # SSH private key (default: asyncssh's, i.e. ~/.ssh/id_*)
    known_hosts = "~/.ssh/known_hosts"  # or "off": accept any host key (throwaway labs only)
    workdir = "/srv/kourier_lab" # the checkout on every host (default: this checkout's path)
    python = ".venv/bin/python"  # relative to workdir, or absolute (default: .venv/bin/python)
    prepare = "check"            # check: each host must be at this commit;
                                 # ship: copy this commit there (git archive over SFTP) and run
                                 # `make setup` in it when it is not
    setup = "make setup"         # what "ship" runs in the shipped tree (the README's set-up)

    # a sweep over several host pairs (Dask dispatches one task per run and pair):
    pairs = [{server = "ssh://root@a", clients = ["ssh://root@b"]},
             {server = "ssh://root@c", clients = ["ssh://root@d"], address = "192.0.2.12"}]

Without `[hosts]` an experiment runs on this machine exactly as before.
"""
from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

PREPARE_MODES = ("check", "ship")
_KEYS = {"server", "clients", "pairs", "address", "identity", "known_hosts", "workdir",
         "python", "prepare", "setup"}
_PAIR_KEYS = {"server", "clients", "address"}


class HostsError(ValueError):
    """A bad [hosts] table (the message is one line), or a host that cannot be used."""


@dataclass(frozen=True)
class Host:
    """One machine: reached over SSH (`ssh://user@host[:port]`) or this one ("local")."""
    url: str
    hostname: Optional[str]        # None: this machine, no SSH
    port: int = 22
    username: Optional[str] = None

    @property
    def local(self) -> bool:
        return self.hostname is None

    @property
    def label(self) -> str:
        """A short name for rows and file names."""
        if self.local:
            return "local"
        return self.hostname if self.port == 22 else f"{self.hostname}:{self.port}"


def parse_host(text: Any, where: str = "hosts") -> Host:
    if not isinstance(text, str):
        raise HostsError(f"{where}: a host must be a string like \"ssh://user@host:22\" or "
                         f"\"local\", not {text!r}")
    if text == "local":
        return Host("local", None)
    u = urllib.parse.urlsplit(text)
    try:
        port = u.port or 22
    except ValueError:
        raise HostsError(f"{where}: {text!r} has a bad port") from None
    if u.scheme != "ssh" or not u.hostname or u.path not in ("", "/") or u.query or u.password:
        raise HostsError(f"{where}: {text!r} is not ssh://user@host[:port] (no password, no "
                         f"path) nor \"local\"")
    return Host(text, u.hostname, port, urllib.parse.unquote(u.username) if u.username else None)


@dataclass(frozen=True)
class HostPair:
    """A server host and the client hosts that load it."""
    server: Host
    clients: Tuple[Host, ...]
    address: str                   # the server's address as the clients dial it

    @property
    def label(self) -> str:
        return f"{self.server.label}<-{'+'.join(c.label for c in self.clients)}"

    @property
    def hosts(self) -> List[Host]:
        return list(dict.fromkeys([self.server, *self.clients]))


@dataclass(frozen=True)
class HostsSpec:
    pairs: Tuple[HostPair, ...]
    identity: Optional[str] = None
    known_hosts: Optional[str] = "~/.ssh/known_hosts"   # None: "off"
    workdir: Optional[str] = None                       # None: this checkout's path
    python: str = ".venv/bin/python"
    prepare: str = "check"
    setup: str = "make setup"

    @property
    def sweep(self) -> bool:
        """More than one host pair: dispatched by Dask (bench/hosts/sweep.py)."""
        return len(self.pairs) > 1


def _pair(data: Dict[str, Any], where: str) -> HostPair:
    if "server" not in data or "clients" not in data:
        raise HostsError(f"{where}: needs both server = \"ssh://user@host\" and clients = [...]")
    server = parse_host(data["server"], f"{where}.server")
    clients = data["clients"]
    if isinstance(clients, str):
        clients = [clients]
    if not isinstance(clients, list) or not clients:
        raise HostsError(f"{where}.clients must be a non-empty list of hosts")
    hosts = tuple(parse_host(c, f"{where}.clients") for c in clients)
    if len(set(hosts)) != len(hosts):
        raise HostsError(f"{where}.clients names one host twice")
    address = data.get("address", "127.0.0.1" if server.local else server.hostname)
    if not isinstance(address, str) or not re.fullmatch(r"[A-Za-z0-9_.:%-]+", address):
        raise HostsError(f"{where}.address must be a host name or IP address, not {address!r}")
    return HostPair(server, hosts, address)


def parse_hosts(data: Any, where: str = "experiment") -> HostsSpec:
    """Validate a decoded [hosts] table; raise HostsError on the first problem."""
    w = f"{where}: [hosts]"
    if not isinstance(data, dict):
        raise HostsError(f"{w} must be a table")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise HostsError(f"{w}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})")
    if "pairs" in data:
        if set(data) & {"server", "clients", "address"}:
            raise HostsError(f"{w}: give either server/clients or pairs = [...], not both")
        pairs = data["pairs"]
        if not isinstance(pairs, list) or not pairs or not all(isinstance(p, dict) for p in pairs):
            raise HostsError(f"{w}: pairs must be a non-empty list of tables "
                             f"{{server = ..., clients = [...]}}")
        for i, p in enumerate(pairs):
            bad = sorted(set(p) - _PAIR_KEYS)
            if bad:
                raise HostsError(f"{w}: unknown key {bad[0]!r} in pairs[{i}] "
                                 f"(known: {', '.join(sorted(_PAIR_KEYS))})")
        parsed = tuple(_pair(p, f"{w} pairs[{i}]") for i, p in enumerate(pairs))
    else:
        parsed = (_pair(data, w),)
    strings = {}
    for key in ("identity", "known_hosts", "workdir", "python", "prepare", "setup"):
        if key in data:
            if not isinstance(data[key], str) or not data[key]:
                raise HostsError(f"{w}: {key} must be a non-empty string, not {data[key]!r}")
            strings[key] = data[key]
    prepare = strings.get("prepare", "check")
    if prepare not in PREPARE_MODES:
        raise HostsError(f"{w}: prepare must be one of {', '.join(PREPARE_MODES)}, "
                         f"not {prepare!r}")
    known = strings.get("known_hosts", "~/.ssh/known_hosts")
    return HostsSpec(pairs=parsed, identity=strings.get("identity"),
                     known_hosts=None if known == "off" else known,
                     workdir=strings.get("workdir"),
                     python=strings.get("python", ".venv/bin/python"), prepare=prepare,
                     setup=strings.get("setup", "make setup"))
