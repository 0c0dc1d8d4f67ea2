"""The README's quickstart table comes from a report.json by script (issue 9): the block names
its commit, marks the best method, refuses reports it cannot vouch for, and the README's block
names a commit of this repository's history."""

import pathlib
import re
import subprocess

import pytest

from cprfa_jax.report import readme_table

ROOT = pathlib.Path(__file__).resolve().parents[1]


def report(commit="0123456789abcdef", dirty=False, unfinished=False):
  methods = lambda base: {k: {"nme_mean": base + i} for i, (k, _) in enumerate(readme_table.ROWS)}
  return {"code": {"commit": commit, "dirty": dirty},
          "stages": {"capu": {"step": 1 if unfinished else 400, "unfinished": unfinished}},
          "fit": {"sets": {"synth-aflw": {"num_images": 300, "num_points": 68, "methods": methods(8.0)},
                           "synth-cofw": {"num_images": 300, "num_points": 51, "methods": methods(9.5)}}}}


def test_table_names_the_commit_and_bolds_the_best():
  block = readme_table.table(report())
  assert "`0123456789`" in block
  assert "| PnP-68 (our landmark network) | **8.00** | **9.50** |" in block
  assert "| CPRFA (CPR-H + CAPU) | 13.00 | 14.50 |" in block


@pytest.mark.parametrize("kw, match", [(dict(dirty=True), "uncommitted"), (dict(commit=None), "no git"),
                                       (dict(unfinished=True), "unfinished")])
def test_reports_it_cannot_vouch_for_are_refused(kw, match):
  with pytest.raises(readme_table.ReportError, match=match):
    readme_table.table(report(**kw))


def test_replace_block_keeps_the_rest_and_needs_one_marker_pair():
  text = f"intro\n{readme_table.BEGIN}\nold\n{readme_table.END}\noutro\n"
  out = readme_table.replace_block(text, "new")
  assert out == f"intro\n{readme_table.BEGIN}\nnew\n{readme_table.END}\noutro\n"
  with pytest.raises(readme_table.ReportError, match="one"):
    readme_table.replace_block("no markers", "new")


def test_the_readme_table_names_a_commit_of_this_history():
  readme = (ROOT / "README.md").read_text()
  block = readme.split(readme_table.BEGIN)[1].split(readme_table.END)[0]
  commit = re.search(r"commit `([0-9a-f]{7,40})`", block)
  assert commit, "the README's quickstart table names no commit"
  if not (ROOT / ".git").exists():
    pytest.skip("not a git checkout")
  out = subprocess.run(["git", "-C", str(ROOT), "merge-base", "--is-ancestor", commit.group(1), "HEAD"],
                       capture_output=True)
  assert out.returncode == 0, f"commit {commit.group(1)} is not an ancestor of HEAD"
