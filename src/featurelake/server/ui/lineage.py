"""The lineage graph as an inline SVG: columns from sources to groups to their consumers.

Sources sit in the first column, groups in columns by how many groups they derive from, and
training sets and services in the last; every group, training set and service is a link. An
edge that skips a column runs in its own lane under the nodes.
"""

from __future__ import annotations

import html
from urllib.parse import quote

from featurelake.server.ui.catalog import LineageGraph

NODE_W, NODE_H, GAP_X, GAP_Y, PAD, LANE = 190, 30, 70, 14, 10, 8
COLORS = {
    "source": ("#f0f3f6", "#8c959f"),
    "group": ("#dbe9f7", "#2f6fb0"),
    "training_set": ("#e3f4ea", "#2e8b57"),
    "service": ("#fbeedd", "#d98c1f"),
}


def node_href(prefix: str, node_id: str) -> str | None:
    """The page a node links to (None for sources, which have no page)."""
    kind, _, name = node_id.partition(":")
    if kind == "group":
        return f"{prefix}/groups/{quote(name)}"
    if kind == "training_set":
        return f"{prefix}/training-sets#ts-{quote(name)}"
    if kind == "service":
        return f"{prefix}/lineage#service-{quote(name)}"
    return None


def columns(graph: LineageGraph) -> list[list[str]]:
    """Node ids per column, left to right."""
    upstream: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for a, b in graph.edges:
        upstream[b].append(a)
    depth: dict[str, int] = {}

    def level(node: str, seen: frozenset[str]) -> int:
        if node in depth:
            return depth[node]
        kind = graph.nodes[node][0]
        if kind == "source":
            value = 0
        else:
            parents = [p for p in upstream[node] if p not in seen and graph.nodes[p][0] != "source"]
            value = 1 + max((level(p, seen | {node}) for p in parents), default=0)
        depth[node] = value
        return value

    for node in graph.nodes:
        level(node, frozenset())
    last = 1 + max((d for n, d in depth.items() if graph.nodes[n][0] == "group"), default=0)
    out: dict[int, list[str]] = {}
    for node, d in depth.items():
        kind = graph.nodes[node][0]
        column = last if kind in ("training_set", "service") else d
        out.setdefault(column, []).append(node)
    return [sorted(out[c], key=lambda n: graph.nodes[n][1]) for c in sorted(out)]


def lineage_svg(graph: LineageGraph, prefix: str, focus: str | None = None) -> str:
    """The graph as SVG; `focus` (a node id) is drawn bold."""
    if not graph.nodes:
        return "<p class='muted'>Nothing to show.</p>"
    cols = columns(graph)
    where: dict[str, tuple[float, float]] = {}
    for c, nodes in enumerate(cols):
        for r, node in enumerate(nodes):
            where[node] = (PAD + c * (NODE_W + GAP_X), PAD + r * (NODE_H + GAP_Y))
    column_of = {node: c for c, nodes in enumerate(cols) for node in nodes}
    long_edges = [(a, b) for a, b in graph.edges if column_of[b] - column_of[a] > 1]
    width = PAD * 2 + len(cols) * NODE_W + (len(cols) - 1) * GAP_X
    bottom = PAD + max(len(c) for c in cols) * (NODE_H + GAP_Y)
    height = bottom + PAD + LANE * len(long_edges)
    e = html.escape
    out = [
        f"<svg class='lineage' width='{width}' height='{height}' role='img'>"
        "<defs><marker id='arrow' viewBox='0 0 8 8' refX='8' refY='4' markerWidth='7' "
        "markerHeight='7' orient='auto'><path d='M0,0 L8,4 L0,8 z' fill='#8c959f'/></marker>"
        "</defs>"
    ]
    for a, b in graph.edges:
        x1, y1 = where[a][0] + NODE_W, where[a][1] + NODE_H / 2
        x2, y2 = where[b][0], where[b][1] + NODE_H / 2
        if (a, b) in long_edges:  # under the columns it skips, not through their nodes
            lane = bottom + LANE * long_edges.index((a, b))
            half = GAP_X / 2
            path = (
                f"M{x1:.0f},{y1:.0f} C{x1 + half:.0f},{y1:.0f} {x1 + half:.0f},{lane:.0f} "
                f"{x1 + GAP_X:.0f},{lane:.0f} L{x2 - GAP_X:.0f},{lane:.0f} "
                f"C{x2 - half:.0f},{lane:.0f} {x2 - half:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
            )
        else:
            mid = (x1 + x2) / 2
            path = f"M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
        out.append(
            f"<path d='{path}' fill='none' stroke='#8c959f' stroke-width='1.3' "
            "marker-end='url(#arrow)'/>"
        )
    for node, (x, y) in where.items():
        kind, label = graph.nodes[node]
        fill, stroke = COLORS[kind]
        width_px = 3 if node == focus else 1
        text = label if len(label) <= 26 else label[:24] + "…"
        shape = (
            f"<rect x='{x:.0f}' y='{y:.0f}' width='{NODE_W}' height='{NODE_H}' rx='5' "
            f"fill='{fill}' stroke='{stroke}' stroke-width='{width_px}'/>"
            f"<text x='{x + 8:.0f}' y='{y + 19:.0f}'>{e(text)}</text>"
            f"<title>{e(kind.replace('_', ' '))}: {e(label)}</title>"
        )
        href = node_href(prefix, node)
        if href is None:
            out.append(f"<g class='node {kind}'>{shape}</g>")
        else:
            out.append(f"<a href='{e(href)}' class='node {kind}' data-node='{e(node)}'>{shape}</a>")
    out.append("</svg>")
    return "".join(out)
