"""The one markdown-table writer of the reports (report.md, robustness.md, the README's table)."""

from __future__ import annotations


def table(header, rows) -> str:
  """A GitHub markdown table: a line of `header` cells, the rule, a line per row of cells
  (strings, in the header's order); no trailing newline."""
  header = list(header)
  line = lambda cells: "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"
  lines = [line(header), "|" + "---|" * len(header)]
  for cells in rows:
    cells = list(cells)
    if len(cells) != len(header):
      raise ValueError(f"a row has {len(cells)} cells for {len(header)} columns: {cells}")
    lines.append(line(cells))
  return "\n".join(lines)
