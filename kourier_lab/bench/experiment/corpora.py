"""Request corpora for the load shapes where every request differs.

wrk's pipelined shape sends one request 256 times per write; a server that
folds equal requests (or memoises the last head) pays for one of them.  These
corpora are what the `distinct`, `real` and `api` shapes send instead: every
request of a write different, read by wrk through lua/pipeline.lua.

    distinct  the post's minimal head (request line + Host), path and query
              drawn from a small vocabulary, 40-80 bytes per head
    real      browser-like GETs: User-Agent from a short list, Accept,
              Accept-Language, Accept-Encoding, a Cookie of 0-600 bytes,
              sometimes a Referer; header sets differ from request to request
    api       GET /json, GET /path with queries, POST /echo and POST /json with
              small JSON bodies (Content-Length or chunked), answered by the demo
              app's Python handlers (kourier_lab/server/demo.py)

Every corpus is generated here from a seed, nothing is captured from elsewhere:

    python -m kourier_lab.bench.experiment.corpora [--out data/corpora] [--seed 20261207]
    kourier-lab corpora

writes data/corpora/<name>.corpus byte for byte the same on every machine (the
committed files are these; ensure() rewrites a missing one before a batch
loads it).

File format (one header line, then length-prefixed records, raw bytes exact):

    kourier-corpus 1 <name> <count> <seed>\\n
    <decimal length of request 1>\\n<request 1's bytes>
    <decimal length of request 2>\\n<request 2's bytes>
    ...
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from ...paths import repo_root

MAGIC = b"kourier-corpus"
VERSION = 1
SEED = 20261207
HOST = "localhost"


@dataclass(frozen=True)
class CorpusSpec:
    name: str
    count: int          # requests in the file (the deepest pipeline it can feed)
    app: str            # the server app that answers every request 200
    what: str


def corpora_dir() -> Path:
    return repo_root() / "data" / "corpora"


def corpus_path(name: str, root: Optional[Path] = None) -> Path:
    return (Path(root) if root is not None else corpora_dir()) / f"{name}.corpus"


# ---------------------------------------------------------------------------
# Vocabulary: made up here, shared by the generators

_SECTIONS = ("api", "shop", "blog", "docs", "img", "static", "user", "news", "app", "v1", "v2",
             "search", "media", "cart", "help", "wiki")
_NOUNS = ("items", "users", "orders", "posts", "tags", "files", "pages", "cats", "notes", "list",
          "feed", "info", "rank", "data", "view", "sale")
_EXTS = ("html", "css", "js", "png", "jpg", "svg", "json", "txt", "webp", "ico")
_KEYS = ("q", "id", "page", "sort", "lang", "ref", "tab", "n", "from", "to", "v", "sid", "utm", "k")
_WORDS = ("red", "blue", "tea", "sun", "map", "owl", "box", "key", "fox", "ice", "jam", "oak",
          "zen", "ink", "gem", "bay")
_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"


def _token(rng: random.Random, lo: int, hi: int) -> str:
    return "".join(_ALNUM[rng.randrange(len(_ALNUM))] for _ in range(rng.randint(lo, hi)))


def _path(rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 0:           # /api/items/123
        return f"/{rng.choice(_SECTIONS)}/{rng.choice(_NOUNS)}/{rng.randrange(1, 100000)}"
    if kind == 1:           # /static/ab12cd.js
        return f"/{rng.choice(_SECTIONS)}/{_token(rng, 3, 10)}.{rng.choice(_EXTS)}"
    if kind == 2:           # /blog/owl-tea
        return f"/{rng.choice(_SECTIONS)}/{rng.choice(_WORDS)}-{rng.choice(_WORDS)}"
    return f"/{rng.choice(_NOUNS)}"


def _query(rng: random.Random, most: int = 3) -> str:
    pairs = []
    for _ in range(rng.randint(0, most)):
        value = rng.choice((str(rng.randrange(1000)), rng.choice(_WORDS), _token(rng, 2, 8)))
        pairs.append(f"{rng.choice(_KEYS)}={value}")
    return "&".join(pairs)


def _target(rng: random.Random, most: int = 3) -> str:
    q = _query(rng, most)
    return _path(rng) + ("?" + q if q else "")


def _head(lines: List[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


# ---------------------------------------------------------------------------
# The three corpora

def _distinct(rng: random.Random) -> bytes:
    """`GET /path?query HTTP/1.1` + `Host:` only, 40-80 bytes (the post's size class)."""
    while True:
        head = _head([f"GET {_target(rng, 2)} HTTP/1.1", f"Host: {HOST}"])
        if 40 <= len(head) <= 80:
            return head


_USER_AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
)
_ACCEPT = {
    "html": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    "image": "image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5",
    "css": "text/css,*/*;q=0.1",
    "script": "*/*",
    "json": "application/json, text/plain, */*",
}
_KIND_OF_EXT = {"png": "image", "jpg": "image", "svg": "image", "webp": "image", "ico": "image",
                "css": "css", "js": "script", "json": "json"}
_LANGUAGES = ("en-US,en;q=0.5", "en-GB,en;q=0.9", "de-DE,de;q=0.9,en;q=0.8", "fr-FR,fr;q=0.8",
              "es-ES,es;q=0.9", "ja,en-US;q=0.7,en;q=0.3", "pt-BR,pt;q=0.9,en;q=0.6")
_ENCODINGS = ("gzip, deflate, br", "gzip, deflate, br, zstd", "gzip, deflate", "br")


def _cookie(rng: random.Random) -> Optional[str]:
    """A Cookie value of 0-600 bytes: most short or none, a few long (sessions, trackers)."""
    r = rng.random()
    if r < 0.25:
        return None
    budget = rng.randint(10, 80) if r < 0.88 else rng.randint(80, 600)
    parts, size = [], 0
    while True:
        part = f"{_token(rng, 2, 8)}={_token(rng, 4, 40)}"
        if parts and size + 2 + len(part) > budget:
            break
        parts.append(part)
        size += len(part) + (2 if len(parts) > 1 else 0)
        if size >= budget:
            break
    return "; ".join(parts)[:600]


def _real(rng: random.Random) -> bytes:
    """A browser-like GET: each request its own path, query and header set."""
    target = _target(rng, 3)
    ext = target.split("?")[0].rsplit(".", 1)[-1] if "." in target.split("?")[0] else ""
    kind = _KIND_OF_EXT.get(ext, "html")
    lines = [f"GET {target} HTTP/1.1", f"Host: {HOST}",
             f"User-Agent: {rng.choice(_USER_AGENTS)}", f"Accept: {_ACCEPT[kind]}"]
    if rng.random() < 0.9:
        lines.append(f"Accept-Language: {rng.choice(_LANGUAGES)}")
    lines.append(f"Accept-Encoding: {rng.choice(_ENCODINGS)}")
    if rng.random() < 0.6:
        lines.append(f"Referer: http://{HOST}{_path(rng)}")
    cookie = _cookie(rng)
    if cookie:
        lines.append(f"Cookie: {cookie}")
    if kind == "html" and rng.random() < 0.5:
        lines += ["Sec-Fetch-Dest: document", "Sec-Fetch-Mode: navigate",
                  "Upgrade-Insecure-Requests: 1"]
    if rng.random() < 0.3:
        lines.append("Connection: keep-alive")
    return _head(lines)


_CLIENTS = ("python-requests/2.32.3", "curl/8.8.0", "okhttp/4.12.0", "axios/1.7.2",
            "Go-http-client/1.1")


def _json_body(rng: random.Random) -> bytes:
    doc = {"id": rng.randrange(1, 1 << 20), "name": f"{rng.choice(_WORDS)}-{_token(rng, 2, 6)}"}
    for _ in range(rng.randint(0, 3)):
        key = rng.choice(_KEYS)
        doc.setdefault(key, rng.choice((rng.randrange(1000), rng.choice(_WORDS), rng.random() < 0.5,
                               [rng.randrange(100) for _ in range(rng.randint(1, 4))])))
    return json.dumps(doc, separators=(",", ":")).encode("ascii")


def _chunked(rng: random.Random, body: bytes) -> bytes:
    """The body in 1-3 chunks, then the last chunk."""
    cuts = sorted(rng.sample(range(1, len(body)), min(rng.randint(0, 2), len(body) - 1)))
    out, prev = [], 0
    for cut in cuts + [len(body)]:
        out.append(b"%x\r\n%s\r\n" % (cut - prev, body[prev:cut]))
        prev = cut
    return b"".join(out) + b"0\r\n\r\n"


def _api(rng: random.Random) -> bytes:
    """GETs answered by the demo app's handlers, and POSTs with small JSON bodies."""
    common = [f"Host: {HOST}", f"User-Agent: {rng.choice(_CLIENTS)}",
              "Accept: application/json"]
    if rng.random() < 0.5:
        common.append(f"Authorization: Bearer {_token(rng, 16, 32)}")
    r = rng.random()
    if r < 0.5:
        q = _query(rng, 3)
        path = rng.choice(("/json", "/path"))
        return _head([f"GET {path}{'?' + q if q else ''} HTTP/1.1", *common])
    body = _json_body(rng)
    path = "/echo" if r < 0.7 else "/json"
    lines = [f"POST {path} HTTP/1.1", *common, "Content-Type: application/json"]
    if rng.random() < 0.7:
        return _head(lines + [f"Content-Length: {len(body)}"]) + body
    return _head(lines + ["Transfer-Encoding: chunked"]) + _chunked(rng, body)


CORPORA: Dict[str, CorpusSpec] = {
    "distinct": CorpusSpec("distinct", 4096, "default", "minimal heads (request line + Host), "
                                                        "every one different, 40-80 bytes"),
    "real": CorpusSpec("real", 1024, "default", "browser-like GETs, each with its own path, query "
                                                "and header set"),
    "api": CorpusSpec("api", 1280, "demo", "GETs and JSON POSTs (Content-Length and chunked) for "
                                           "the demo app's handlers"),
}
_GENERATORS: Dict[str, Callable[[random.Random], bytes]] = {
    "distinct": _distinct, "real": _real, "api": _api}


def generate(name: str, seed: int = SEED) -> List[bytes]:
    """The corpus's requests: `count` different ones, the same for the same seed."""
    spec = CORPORA[name]
    rng = random.Random(f"kourier-corpus-{name}-{seed}")     # str seeds hash the same everywhere
    make = _GENERATORS[name]
    out, seen = [], set()
    while len(out) < spec.count:
        req = make(rng)
        if req not in seen:                  # every request of the file differs
            seen.add(req)
            out.append(req)
    return out


def encode(name: str, requests: List[bytes], seed: int = SEED) -> bytes:
    parts = [b"%s %d %s %d %d\n" % (MAGIC, VERSION, name.encode(), len(requests), seed)]
    for req in requests:
        parts.append(b"%d\n" % len(req))
        parts.append(req)
    return b"".join(parts)


class CorpusError(ValueError):
    """A corpus file that is not in the format above."""


def decode(data: bytes) -> Tuple[str, List[bytes]]:
    """(name, requests) of a corpus file's bytes."""
    nl = data.find(b"\n")
    head = data[:nl].split() if nl > 0 else []
    if len(head) != 5 or head[0] != MAGIC or head[1] != b"%d" % VERSION:
        raise CorpusError(f"not a kourier corpus (version {VERSION}) file")
    name, count = head[2].decode(), int(head[3])
    out, pos = [], nl + 1
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            raise CorpusError(f"corpus {name}: truncated record at byte {pos}")
        n = int(data[pos:end])
        out.append(data[end + 1:end + 1 + n])
        if len(out[-1]) != n:
            raise CorpusError(f"corpus {name}: record {len(out)} is cut short")
        pos = end + 1 + n
    if len(out) != count:
        raise CorpusError(f"corpus {name}: {len(out)} requests, the header says {count}")
    return name, out


def write(name: str, root: Optional[Path] = None, seed: int = SEED) -> Path:
    path = corpus_path(name, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(encode(name, generate(name, seed), seed))
    tmp.replace(path)
    return path


def ensure(name: str, root: Optional[Path] = None) -> Path:
    """The corpus file, written from the default seed first if it is missing."""
    if name not in CORPORA:
        raise CorpusError(f"unknown corpus {name!r} (known: {', '.join(CORPORA)})")
    path = corpus_path(name, root)
    if not path.is_file():
        write(name, root)
    return path


@dataclass(frozen=True)
class CorpusInfo:
    name: str
    path: Path
    sha256: str
    requests: int
    mean_request_bytes: float
    sample: Tuple[bytes, ...]      # the first requests, for verification


_INFO: Dict[Tuple[str, str, float], CorpusInfo] = {}


def info(name: str, root: Optional[Path] = None, sample: int = 256) -> CorpusInfo:
    """What a row records about the corpus it was loaded with (the file as it is now)."""
    path = ensure(name, root)
    key = (str(path), name, path.stat().st_mtime)
    if key not in _INFO:
        data = path.read_bytes()
        _, reqs = decode(data)
        _INFO[key] = CorpusInfo(name, path, hashlib.sha256(data).hexdigest(), len(reqs),
                                sum(map(len, reqs)) / len(reqs), tuple(reqs[:sample]))
    return _INFO[key]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="kourier-lab corpora",
                                description="Write the request corpora of the distinct, real and "
                                            "api shapes (deterministic from the seed).")
    add_arguments(p)
    return run(p.parse_args(argv))


def add_arguments(p) -> None:
    p.add_argument("names", nargs="*", help=f"corpora to write (default all: {', '.join(CORPORA)})")
    p.add_argument("--out", default=None, help="directory (default data/corpora)")
    p.add_argument("--seed", type=int, default=SEED, help=f"generator seed (default {SEED})")


def run(args) -> int:
    names = args.names or list(CORPORA)
    bad = [n for n in names if n not in CORPORA]
    if bad:
        print(f"unknown corpus {bad[0]!r} (known: {', '.join(CORPORA)})", file=sys.stderr)
        return 2
    for name in names:
        path = write(name, Path(args.out) if args.out else None, args.seed)
        data = path.read_bytes()
        _, reqs = decode(data)
        print(f"{path}: {len(reqs)} requests, {sum(map(len, reqs)) / len(reqs):.1f} bytes "
              f"mean, {len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}")
    return 0


def register(sub) -> None:
    """`kourier-lab corpora` (kourier_lab/cli.py's component commands)."""
    c = sub.add_parser("corpora", help="write the request corpora of the distinct/real/api shapes",
                       description="Write data/corpora/<name>.corpus from a seed, byte for byte "
                                   "the same on every machine.")
    add_arguments(c)
    c.set_defaults(func=run)


if __name__ == "__main__":
    sys.exit(main())
