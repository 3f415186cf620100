"""Reading executed plans (EXPLAIN ANALYZE, FORMAT JSON): the shape of a plan gone quadratic.

`make explain` and the plan test use this to check every statement of an import, a review and
the checks: a plan node run once per row of another input that yields many rows each time is a
scan repeated per row, the plan that stale statistics produce after a bulk write. The plan test
also checks that a small job's statements read its own rows, not the tables' (`wide_scans`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# A node looped more often than this, yielding more rows than MANY_ROWS per loop, is flagged.
MANY_LOOPS = 1_000
MANY_ROWS = 50


def nodes(plan: dict[str, Any], depth: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
    """Every node of an executed plan with its depth, parents first."""
    yield depth, plan
    for child in plan.get("Plans", ()):
        yield from nodes(child, depth + 1)


def describe(node: dict[str, Any]) -> str:
    """One node as EXPLAIN's text format names it, with what it did."""
    name = node["Node Type"]
    if "Relation Name" in node:
        name += f" on {node['Relation Name']}"
    if "Index Name" in node:
        name += f" using {node['Index Name']}"
    return f"{name} (rows={node.get('Actual Rows')} loops={node.get('Actual Loops')})"


def quadratic_nodes(plan: dict[str, Any]) -> list[str]:
    """The nodes of an executed plan that rescan many rows once per row of another input."""
    return [
        describe(node)
        for _, node in nodes(plan)
        if node.get("Actual Loops", 0) > MANY_LOOPS and node.get("Actual Rows", 0) > MANY_ROWS
    ]


def rows_read(node: dict[str, Any]) -> int:
    """How many rows a scan node of an executed plan read, over all its loops: those it
    yielded and those its filter or recheck threw away."""
    per_loop = (
        node.get("Actual Rows", 0)
        + node.get("Rows Removed by Filter", 0)
        + node.get("Rows Removed by Index Recheck", 0)
    )
    return per_loop * node.get("Actual Loops", 0)


def wide_scans(plan: dict[str, Any], limit: int) -> list[str]:
    """The scans of tables (not of a statement's own CTEs or functions) in an executed plan
    that read more than `limit` rows: for a small job, rows that are not its own."""
    return [
        f"{describe(node)} read {rows_read(node)} rows"
        for _, node in nodes(plan)
        if "Relation Name" in node and rows_read(node) > limit
    ]


def render(plan: dict[str, Any]) -> str:
    """An executed plan as an indented tree of its nodes."""
    return "\n".join(f"{'  ' * depth}-> {describe(node)}" for depth, node in nodes(plan))
