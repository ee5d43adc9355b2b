"""What cffi's cdef can read from our headers (shared by the native/build_*.py scripts).

Every layout is written once, in a header; the cdef is the header's
KL_CDEF_BEGIN/KL_CDEF_END block (comments removed, only `#define NAME
<integer>` kept, the rest as written) plus the kl_* prototypes after it.
"""
import re

_BLOCK = re.compile(r"/\*\s*KL_CDEF_BEGIN\s*\*/(.*?)/\*\s*KL_CDEF_END\s*\*/", re.S)
_PROTO = re.compile(r"^(?:const\s+)?[a-z_][a-z0-9_]*\s*\**\s*kl_\w+\([^;]*\);", re.M)


def _strip_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", "", text, flags=re.S))


def cdef_from_header(path: str, prototypes: bool = True) -> str:
    with open(path) as f:
        text = f.read()
    m = _BLOCK.search(text)
    if not m:
        raise RuntimeError(f"{path}: no KL_CDEF_BEGIN/KL_CDEF_END block")
    lines = []
    for line in _strip_comments(m.group(1)).splitlines():
        line = line.rstrip()
        if not line:
            continue
        if line.startswith("#define"):
            parts = line.split()
            if len(parts) != 3 or not re.fullmatch(r"-?(0x[0-9a-fA-F]+|\d+)", parts[2]):
                continue   # cffi takes `#define NAME <integer>` only
        lines.append(line)
    out = "\n".join(lines) + "\n"
    if prototypes:
        flat = " ".join(out.split())
        for p in _PROTO.findall(_strip_comments(text[m.end():])):
            p = " ".join(p.split())
            if p not in flat:
                out += p + "\n"
    return out
