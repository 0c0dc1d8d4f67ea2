"""The README's quickstart table, regenerated from a run's report.json, so the published numbers
are the ones the named commit produced:

    .venv/bin/python -m cprfa_jax.report.readme_table runs/quickstart/report.json            # print
    .venv/bin/python -m cprfa_jax.report.readme_table runs/quickstart/report.json --write README.md

`--write` replaces what lies between the README's `<!-- quickstart-table -->` and
`<!-- /quickstart-table -->` markers. A report from a dirty tree or with an unfinished stage is
refused: a number in the README names the commit it came from. So is a report whose package
versions (report.json's `environment`, recorded since issue 23) differ from
`requirements-lock.txt`'s, the versions the README tells a user to install, unless
`--allow_other_versions` is given: the same code moved the table by up to 0.5 NME points between
two installs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys

from cprfa_jax.report import markdown, provenance

LOCK_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "requirements-lock.txt")

BEGIN, END = "<!-- quickstart-table -->", "<!-- /quickstart-table -->"
ROWS = (("PnP-68", "PnP-68 (our landmark network)"), ("PnP + DAFI(C)", "PnP + DAFI(C)"),
        ("Online LM", "Online LM on the DAFI"), ("CPR(C)", "CPR(C)"), ("CPR-H", "CPR-H"),
        ("CPRFA (CPR-H + CAPU)", "CPRFA (CPR-H + CAPU)"))


class ReportError(ValueError):
  pass


def canonical(name: str) -> str:
  """A distribution name as PEP 503 compares them (array_record == array-record)."""
  return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: str) -> dict:
  """{canonical name: version} of a `pip freeze` file's `name==version` lines."""
  pins = {}
  with open(path) as f:
    for n, line in enumerate(f, 1):
      line = line.split("#", 1)[0].strip()
      if not line:
        continue
      if "==" not in line:
        raise ReportError(f"{path}:{n}: {line!r} is not name==version; regenerate it with "
                          "pip freeze --exclude-editable")
      name, version = line.split("==", 1)
      pins[canonical(name.split("[")[0].strip())] = version.strip()
  return pins


def version_mismatches(report: dict, lock: dict) -> list[str]:
  """'name: report X, lock Y' for each package the report records whose version differs from
  the lock file's (a package the lock does not pin counts as differing)."""
  env = report.get("environment")
  if not env or not env.get("packages"):
    return ["report.json records no package versions (evaluated before issue 23)"]
  return [f"{name}: report {version}, lock {lock.get(canonical(name))}"
          for name, version in env["packages"].items()
          if lock.get(canonical(name)) != version]


def table(report: dict, lock: dict | None = None) -> str:
  """The markdown block: a provenance line and mean landmark NME (%) per method and set.
  `lock` ({name: version} of requirements-lock.txt): the report's versions must equal it; None
  skips the check (`--allow_other_versions`)."""
  code = report.get("code") or {}
  if not code.get("commit"):
    raise ReportError("report.json names no git commit; evaluate from a git checkout")
  if code.get("dirty"):
    raise ReportError(f"report.json comes from commit {code['commit'][:10]} with uncommitted "
                      "changes; commit, then train and evaluate again")
  unfinished = [s for s, st in (report.get("stages") or {}).items() if st.get("unfinished")]
  if unfinished:
    raise ReportError(f"stages {unfinished} were evaluated unfinished; finish training first")
  if lock is not None:
    differ = version_mismatches(report, lock)
    if differ:
      raise ReportError("its package versions differ from requirements-lock.txt's ("
                        + "; ".join(differ) + "): evaluate in a venv installed from the lock "
                        "file, or pass --allow_other_versions and say so beside the table")
  sets = report["fit"]["sets"]
  names = list(sets)
  best = {s: min(m["nme_mean"] for m in sets[s]["methods"].values() if math.isfinite(m["nme_mean"]))
          for s in names}
  sizes = ", ".join(f"{s}: {sets[s]['num_images']} images, {sets[s]['num_points']} points"
                    for s in names)
  lines = [f"Measured at commit `{code['commit'][:10]}` ({sizes}); landmark NME in %, mean of "
           "the |yaw| bins a set has.", ""]
  env = report.get("environment")
  if env and env.get("packages"):
    pk = env["packages"]
    lines[0] += (f" Packages: {'requirements-lock.txt' if lock is not None else 'NOT the lock file'}"
                 f" (jax {pk.get('jax')}, flax {pk.get('flax')}, numpy {pk.get('numpy')}); "
                 f"processor: {env.get('processor')} ({provenance.isa_summary(env.get('isa'))}).")
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
  p.add_argument("--lock", default=LOCK_FILE, help="the lock file the report's package versions "
                 "must equal (default: the repository's requirements-lock.txt)")
  p.add_argument("--allow_other_versions", action="store_true",
                 help="accept a report whose package versions differ from the lock file's")
  args = p.parse_args(argv)
  try:
    lock = None if args.allow_other_versions else read_lock(args.lock)
    with open(args.report) as f:
      block = table(json.load(f), lock)
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
