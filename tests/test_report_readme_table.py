"""The README's quickstart table comes from a report.json by script (issue 9): the block names
its commit, marks the best method, refuses reports it cannot vouch for, and the README's block
names a commit of this repository's history."""

import pathlib
import re
import subprocess

import jax
import numpy as np
import pytest

from cprfa_jax.report import provenance, readme_table

ROOT = pathlib.Path(__file__).resolve().parents[1]


LOCK = {"jax": "0.10.2", "flax": "0.12.8", "numpy": "2.4.6", "orbax-checkpoint": "0.12.8"}
ENV = {"packages": {"jax": "0.10.2", "flax": "0.12.8", "numpy": "2.4.6",
                    "orbax_checkpoint": "0.12.8"},
       "processor": "AMD EPYC", "isa": ["avx", "avx2", "fma"]}


def report(commit="0123456789abcdef", dirty=False, unfinished=False, env=ENV):
  methods = lambda base: {k: {"nme_mean": base + i} for i, (k, _) in enumerate(readme_table.ROWS)}
  return {"code": {"commit": commit, "dirty": dirty}, "environment": env,
          "stages": {"capu": {"step": 1 if unfinished else 400, "unfinished": unfinished}},
          "fit": {"sets": {"synth-aflw": {"num_images": 300, "num_points": 68, "methods": methods(8.0)},
                           "synth-cofw": {"num_images": 300, "num_points": 51, "methods": methods(9.5)}}}}


def test_table_names_the_commit_and_bolds_the_best():
  block = readme_table.table(report(), LOCK)
  assert "`0123456789`" in block
  assert "Packages: requirements-lock.txt (jax 0.10.2, flax 0.12.8, numpy 2.4.6)" in block
  assert "processor: AMD EPYC (AVX2 + FMA)" in block
  assert "| PnP-68 (our landmark network) | **8.00** | **9.50** |" in block
  assert "| CPRFA (CPR-H + CAPU) | 13.00 | 14.50 |" in block


@pytest.mark.parametrize("kw, match", [(dict(dirty=True), "uncommitted"), (dict(commit=None), "no git"),
                                       (dict(unfinished=True), "unfinished")])
def test_reports_it_cannot_vouch_for_are_refused(kw, match):
  with pytest.raises(readme_table.ReportError, match=match):
    readme_table.table(report(**kw), LOCK)


@pytest.mark.parametrize("env, match", [
    (dict(ENV, packages=dict(ENV["packages"], numpy="2.4.5")), "numpy: report 2.4.5, lock 2.4.6"),
    (dict(ENV, packages=dict(ENV["packages"], scipy="1.17.1")), "scipy: report 1.17.1, lock None"),
    (None, "records no package versions")])
def test_a_report_from_other_package_versions_is_refused_unless_told(env, match):
  with pytest.raises(readme_table.ReportError, match=match):
    readme_table.table(report(env=env), LOCK)
  block = readme_table.table(report(env=env), None)   # --allow_other_versions
  assert "| CPRFA (CPR-H + CAPU) | 13.00 | 14.50 |" in block
  assert "requirements-lock.txt" not in block


def test_read_lock_canonicalises_names_and_names_a_bad_line(tmp_path):
  lock = tmp_path / "lock.txt"
  lock.write_text("# comment\narray_record==0.8.6\nOrbax.Checkpoint==0.12.8  # pinned\n\n")
  assert readme_table.read_lock(str(lock)) == {"array-record": "0.8.6",
                                               "orbax-checkpoint": "0.12.8"}
  lock.write_text("jax>=0.4\n")
  with pytest.raises(readme_table.ReportError, match=r"lock.txt:1: 'jax>=0.4' is not name==version"):
    readme_table.read_lock(str(lock))


def test_the_lock_file_pins_every_package_a_report_records():
  pins = readme_table.read_lock(readme_table.LOCK_FILE)
  assert readme_table.LOCK_FILE == str(ROOT / "requirements-lock.txt")
  missing = [p for p in provenance.PACKAGES if readme_table.canonical(p) not in pins]
  assert not missing, missing


def test_environment_names_the_installed_versions_and_the_machine():
  import importlib.metadata
  env = provenance.environment()
  assert env["packages"]["jax"] == importlib.metadata.version("jax") == jax.__version__
  assert env["packages"]["numpy"] == np.__version__
  assert env["devices"]["count"] == jax.device_count() and env["devices"]["backend"] == "cpu"
  line = provenance.describe_environment(env)
  assert f"jax {jax.__version__}" in line and env["processor"] in line
  assert provenance.package_versions(("no-such-distribution-xyz",)) == {
      "no-such-distribution-xyz": None}
  assert provenance.isa_summary(["avx", "avx2", "avx512f", "fma"]) == "AVX-512 + FMA"
  assert provenance.isa_summary([]) == "no AVX"


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


def test_cli_refuses_other_versions_in_one_line_and_accepts_them_when_told(tmp_path, capsys):
  import json
  path = tmp_path / "report.json"
  path.write_text(json.dumps(report(env=dict(ENV, packages={"jax": "0.0.1"}))))
  lock = tmp_path / "lock.txt"
  lock.write_text("jax==0.10.2\n")
  assert readme_table.main([str(path), "--lock", str(lock)]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "jax: report 0.0.1, lock 0.10.2" in err and str(path) in err
  assert readme_table.main([str(path), "--lock", str(lock), "--allow_other_versions"]) == 0
  assert "NOT the lock file (jax 0.0.1" in capsys.readouterr().out
