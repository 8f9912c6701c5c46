#!/usr/bin/env python3
"""A flame graph (SVG) from `perf script` output, with no tools beyond Python 3.

    perf script -i perf.data | python3 benchmarks/flamegraph.py "title" > graph.svg

Stacks are folded as Brendan Gregg's stackcollapse-perf does (root first, one frame per
function); each box's width is its share of the samples, and its tooltip gives the count and
per cent. Boxes narrower than 0.1% are left out.
"""

import html
import re
import sys
from collections import defaultdict

WIDTH = 1600
ROW = 16
MIN_SHARE = 0.001


def fold(lines):
    stacks = defaultdict(int)
    process, frames = None, []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if process is not None and frames:
                stacks[tuple([process] + frames[::-1])] += 1
            process, frames = None, []
            continue
        if not line.startswith((" ", "\t")):
            process = line.split()[0]
            frames = []
            continue
        parts = line.strip().split(None, 1)
        if len(parts) < 2:
            continue
        symbol = re.sub(r"\s+\([^()]*\)$", "", parts[1])
        symbol = re.sub(r"\+0x[0-9a-f]+$", "", symbol)
        # Rust's hash suffix says nothing to a reader.
        symbol = re.sub(r"::h[0-9a-f]{16}$", "", symbol)
        frames.append(symbol or "[unknown]")
    if process is not None and frames:
        stacks[tuple([process] + frames[::-1])] += 1
    return stacks


def tree(stacks):
    root = {"name": "all", "count": 0, "children": {}}
    for stack, count in stacks.items():
        root["count"] += count
        node = root
        for frame in stack:
            child = node["children"].setdefault(frame, {"name": frame, "count": 0, "children": {}})
            child["count"] += count
            node = child
    return root


def colour(name):
    h = 0
    for ch in name:
        h = (h * 31 + ord(ch)) & 0xFFFFFF
    if "[k]" in name or name.startswith(("__x64", "entry_SYSCALL", "do_syscall")):
        return "rgb(%d,%d,%d)" % (200 + h % 55, 120 + h % 60, 60)
    return "rgb(%d,%d,%d)" % (220 + h % 35, 80 + (h >> 8) % 120, 40 + (h >> 16) % 40)


def render(root, title):
    total = root["count"] or 1
    boxes = []
    depth_max = [0]

    def walk(node, x, depth):
        share = node["count"] / total
        if share < MIN_SHARE:
            return
        depth_max[0] = max(depth_max[0], depth)
        boxes.append((x, depth, share, node["name"], node["count"]))
        child_x = x
        for child in sorted(node["children"].values(), key=lambda c: c["name"]):
            walk(child, child_x, depth + 1)
            child_x += child["count"] / total

    walk(root, 0.0, 0)
    height = (depth_max[0] + 3) * ROW + 30
    out = [
        '<?xml version="1.0" standalone="no"?>',
        '<svg version="1.1" width="%d" height="%d" xmlns="http://www.w3.org/2000/svg" '
        'font-family="Verdana,sans-serif" font-size="11">' % (WIDTH, height),
        '<rect width="100%" height="100%" fill="#f8f8f0"/>',
        '<text x="%d" y="20" text-anchor="middle" font-size="15">%s (%d samples)</text>'
        % (WIDTH // 2, html.escape(title), total),
    ]
    for x, depth, share, name, count in boxes:
        px, w = x * (WIDTH - 20) + 10, share * (WIDTH - 20)
        y = height - (depth + 1) * ROW - 10
        label = html.escape(name)
        out.append(
            '<g><title>%s (%d samples, %.2f%%)</title><rect x="%.1f" y="%d" width="%.1f" '
            'height="%d" fill="%s" rx="2"/>' % (label, count, 100 * share, px, y, w, ROW - 1, colour(name))
        )
        chars = int(w / 7)
        if chars >= 3:
            text = name if len(name) <= chars else name[: chars - 2] + ".."
            out.append('<text x="%.1f" y="%d">%s</text>' % (px + 3, y + ROW - 4, html.escape(text)))
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)


if __name__ == "__main__":
    title = sys.argv[1] if len(sys.argv) > 1 else "Flame graph"
    print(render(tree(fold(sys.stdin)), title))
