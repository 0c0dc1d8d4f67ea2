"""The README's quickstart table, regenerated from a run's report.json, so the published numbers
are the ones the named commit produced:

    .venv/bin/python -m cprfa_jax.report.readme_table runs/quickstart/report.json            # print
    .venv/bin/python -m cprfa_jax.report.readme_table runs/quickstart/report.json --write README.md

`--write` replaces what lies between the README's `<!-- quickstart-table -->` and
`<!-- /quickstart-table -->` markers. A report from a dirty tree or with an unfinished stage is
refused: a number in the README names the commit it came from.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from cprfa_jax.report import markdown

BEGIN, END = "<!-- quickstart-table -->", "<!-- /quickstart-table -->"
ROWS = (("PnP-68", "PnP-68 (our landmark network)"), ("PnP + DAFI(C)", "PnP + DAFI(C)"),
        ("Online LM", "Online LM on the DAFI"), ("CPR(C)", "CPR(C)"), ("CPR-H", "CPR-H"),
        ("CPRFA (CPR-H + CAPU)", "CPRFA (CPR-H + CAPU)"))


class ReportError(ValueError):
  pass


def table(report: dict) -> str:
  """The markdown block: a provenance line and mean landmark NME (%) per method and set."""
  code = report.get("code") or {}
  if not code.get("commit"):
    raise ReportError("report.json names no git commit; evaluate from a git checkout")
  if code.get("dirty"):
    raise ReportError(f"report.json comes from commit {code['commit'][:10]} with uncommitted "
                      "changes; commit, then train and evaluate again")
  unfinished = [s for s, st in (report.get("stages") or {}).items() if st.get("unfinished")]
  if unfinished:
    raise ReportError(f"stages {unfinished} were evaluated unfinished; finish training first")
  sets = report["fit"]["sets"]
  names = list(sets)
  best = {s: min(m["nme_mean"] for m in sets[s]["methods"].values() if math.isfinite(m["nme_mean"]))
          for s in names}
  sizes = ", ".join(f"{s}: {sets[s]['num_images']} images, {sets[s]['num_points']} points"
                    for s in names)
  lines = [f"Measured at commit `{code['commit'][:10]}` ({sizes}); landmark NME in %, mean of "
           "the |yaw| bins a set has.", ""]
  grid = []
  for key, label in ROWS:
    cells = []
    for s in names:
      row = sets[s]["methods"].get(key)
      v = None if row is None else row["nme_mean"]
      cells.append("–" if v is None else (f"**{v:.2f}**" if v == best[s] else f"{v:.2f}"))
    grid.append([label] + cells)
  return "\n".join(lines + [markdown.table(["method"] + names, grid)])


def replace_block(text: str, block: str, where: str = "README") -> str:
  if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
    raise ReportError(f"{where} needs one {BEGIN} ... {END} pair around the table")
  head, rest = text.split(BEGIN)
  return head + BEGIN + "\n" + block + "\n" + END + rest.split(END, 1)[1]


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("report", help="report.json written by evaluate.py")
  p.add_argument("--write", metavar="README", help="replace the table in this file")
  args = p.parse_args(argv)
  try:
    with open(args.report) as f:
      block = table(json.load(f))
    if args.write:
      with open(args.write) as f:
        text = replace_block(f.read(), block, args.write)
      with open(args.write, "w") as f:
        f.write(text)
    else:
      print(block)
  except (OSError, KeyError, json.JSONDecodeError, ReportError) as e:
    print(f"readme_table: {args.report}: {type(e).__name__}: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
