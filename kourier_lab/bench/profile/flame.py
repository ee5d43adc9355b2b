"""Folded stacks and a small flame-graph SVG renderer (no dependency).

`fold_perf_script(text)` turns `perf script` output (one block per sample:
a header line, then one frame per line, leaf first) into folded stacks,
{"root;...;leaf": samples}, the format Brendan Gregg's flamegraph.pl reads.
`render_svg(folded)` draws them: one rectangle per frame, its width the share
of samples that passed through it, callers below callees, a tooltip (<title>)
with the frame's name, samples and share.  Frames perf could not name get the
name of their object file in brackets ([unknown] in libc.so.6 -> [libc.so.6]).
"""
from __future__ import annotations

import html
import re
import zlib
from collections import defaultdict
from typing import Dict

_FRAME = re.compile(r"^\s*[0-9a-f]+\s+(.+?)\s+\((.*)\)\s*$")
_HEADER = re.compile(r"^(\S.*?)\s+(\d+)(?:/(\d+))?\s+(?:\[\d+\]\s+)?[\d.]+:")


def _name(sym: str, dso: str) -> str:
    sym = re.sub(r"\+0x[0-9a-f]+$", "", sym.strip())
    if sym in ("[unknown]", ""):
        base = dso.rsplit("/", 1)[-1].strip("[]") if dso else "unknown"
        return f"[{base}]"
    return sym.replace(";", ":")


def fold_perf_script(text: str, pids=None) -> Dict[str, int]:
    """{folded stack: samples} from `perf script` text; only the samples of
    `pids` when given (a system-wide recording, one process kept)."""
    folded: Dict[str, int] = defaultdict(int)
    comm = None
    frames = []
    keep = None if pids is None else {int(p) for p in pids}

    def flush():
        if comm is not None:
            stack = [comm] + [f for f in reversed(frames)]
            folded[";".join(stack)] += 1

    for line in text.splitlines():
        if not line.strip():
            flush()
            comm, frames = None, []
            continue
        if not line.startswith((" ", "\t")):
            flush()
            m = _HEADER.match(line)
            comm = m.group(1) if m else (line.split()[0] if line.split() else "?")
            if keep is not None and (m is None or int(m.group(3) or m.group(2)) not in keep):
                comm = None          # another process's sample
            frames = []
            continue
        m = _FRAME.match(line)
        if m:
            frames.append(_name(m.group(1), m.group(2)))
    flush()
    return dict(folded)


def read_folded(text: str) -> Dict[str, int]:
    """{folded stack: samples} from folded lines ("a;b;c 12"), as py-spy's
    raw format and flamegraph.pl write them."""
    folded: Dict[str, int] = defaultdict(int)
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            folded[stack] += int(count)
    return dict(folded)


# characters XML 1.0 forbids (control bytes, lone surrogates, U+FFFE/FFFF): a
# frame name read from a running process may hold them
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(s: str) -> str:
    return html.escape(_NOT_XML.sub("\ufffd", s))


def _color(name: str) -> str:
    h = zlib.crc32(name.encode(errors="surrogatepass"))
    if name.startswith("["):              # unnamed code: grey-blue
        return f"rgb({150 + h % 40},{160 + h % 40},{190 + h % 40})"
    return f"rgb({205 + h % 50},{80 + (h >> 8) % 120},{30 + (h >> 16) % 50})"


def render_svg(folded: Dict[str, int], title: str = "flame graph", width: int = 1200,
               row: int = 16, min_px: float = 0.3) -> str:
    """An SVG flame graph of folded stacks (root at the bottom)."""
    tree: dict = {"n": 0, "kids": {}}
    for stack, count in folded.items():
        node = tree
        node["n"] += count
        for frame in stack.split(";"):
            node = node["kids"].setdefault(frame, {"n": 0, "kids": {}})
            node["n"] += count
    total = tree["n"] or 1

    def depth(node):
        return 1 + max((depth(k) for k in node["kids"].values()), default=0)

    levels = depth(tree) - 1
    height = (levels + 3) * row
    scale = (width - 20) / total
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="monospace" font-size="11">',
           f'<rect width="100%" height="100%" fill="#fdfdf6"/>',
           f'<text x="{width / 2}" y="{row}" text-anchor="middle" font-size="14">'
           f'{_xml_text(title)} ({total} samples)</text>']

    def draw(node, name, x, level):
        w = node["n"] * scale
        if w < min_px:
            return
        y = height - (level + 1) * row
        share = node["n"] / total * 100
        label = _xml_text(name)
        out.append(f'<g><title>{label}: {node["n"]} samples ({share:.1f}%)</title>'
                   f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 1}" fill="{_color(name)}" rx="1"/>')
        chars = int(w / 7)
        if chars >= 3:
            text = name if len(name) <= chars else name[:chars - 2] + ".."
            out.append(f'<text x="{x + 2:.1f}" y="{y + row - 4}">{_xml_text(text)}</text>')
        out.append("</g>")
        cx = x
        for kname, kid in sorted(node["kids"].items()):
            draw(kid, kname, cx, level + 1)
            cx += kid["n"] * scale

    x = 10.0
    for name, kid in sorted(tree["kids"].items()):
        draw(kid, name, x, 0)
        x += kid["n"] * scale
    out.append("</svg>")
    return "\n".join(out)
