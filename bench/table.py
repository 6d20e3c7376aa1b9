"""Plain-text tables for the bench's figures: numbers line up on the right."""

from __future__ import annotations

from collections.abc import Sequence


def table(rows: Sequence[Sequence[str]], right: frozenset[int] = frozenset({1, 2, 3})) -> str:
    """Columns padded to their widest cell; the columns in `right` right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                               for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
                     .rstrip() for row in rows)


def yes(ok: bool) -> str:
    return "yes" if ok else "NO"
