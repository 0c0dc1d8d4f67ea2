"""train.py / evaluate.py from the command line as a newcomer meets them: --help, a mistyped
config key, an untrained workdir, and a report that says what it evaluated (each stage's
checkpoint step against its configured steps, the code's commit, the config), refusing an
unfinished stage unless --allow_unfinished, which marks its rows."""

import json
import os
import pathlib
import re
import subprocess
import sys

import jax
import pytest

from configs import tiny as tiny_config
from cprfa_jax.evaluate import stage_status, table2
from cprfa_jax.report import provenance

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(script, *flags, timeout=900, env=None):
  return subprocess.run([sys.executable, str(ROOT / script), *flags], capture_output=True,
                        text=True, timeout=timeout, cwd=ROOT, env=env)


@pytest.fixture
def without_jax(tmp_path):
  """An environment whose interpreter cannot import jax (or flax): --help and flag errors must
  be answered before the pipeline loads (~2 s of imports, train.py's and evaluate.py's)."""
  (tmp_path / "sitecustomize.py").write_text(
      "import sys\nsys.modules.update(jax=None, flax=None)\n")
  return dict(os.environ, PYTHONPATH=str(tmp_path))


def _tiny(script, work, data, *flags):
  return _run(script, "--config", "configs/tiny.py", "--workdir", str(work),
              f"--config.data.data_dir={data}", *flags)


@pytest.mark.parametrize("script", ["train.py", "evaluate.py"])
def test_help_exits_0_and_lists_the_config_keys(script, without_jax):
  out = _run(script, "--help", timeout=120, env=without_jax)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "--workdir" in out.stdout and "--config.KEY=VALUE" in out.stdout
  assert "--config.unet.train.num_steps=1800" in out.stdout        # configs/quickstart.py's default
  assert "--config.cpr.train.num_steps=" in out.stdout
  assert ("--allow_unfinished" in out.stdout) == (script == "evaluate.py")
  tiny = _run(script, "--config", "configs/tiny.py", "--help", timeout=120, env=without_jax)
  assert tiny.returncode == 0 and "--config.unet.train.num_steps=8" in tiny.stdout


@pytest.mark.parametrize("script", ["train.py", "evaluate.py"])
def test_a_mistyped_key_is_one_line(script, without_jax):
  out = _run(script, "--config", "configs/tiny.py", "--workdir", "/nonexistent-workdir",
             "--config.unet.train.num_step=3", timeout=120, env=without_jax)
  assert out.returncode == 2
  assert len(out.stderr.strip().splitlines()) == 1, out.stderr
  assert "--config.unet.train.num_step" in out.stderr and "--config.unet.train.num_steps?" in out.stderr
  missing = _run(script, "--workdir", "/nonexistent-workdir", timeout=120, env=without_jax)
  assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
  assert "--config" in missing.stderr


def test_an_untrained_workdir_names_the_root(tmp_path):
  work = tmp_path / "qs"
  out = _tiny("evaluate.py", work, tmp_path / "data")
  assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
  assert f"--workdir {work}" in out.stderr and "train.py" in out.stderr
  assert f"--workdir {work}/dafi" not in out.stderr


def test_an_unfinished_stage_is_refused_or_marked(tmp_path):
  work, data = tmp_path / "run", tmp_path / "data"
  out = _tiny("train.py", work, data, "--config.stages=('dafi',)", "--config.unet.train.num_steps=4")
  assert out.returncode == 0, out.stderr[-3000:]

  # tiny asks the U-Net for 8 steps: its checkpoint at step 4 is refused ...
  out = _tiny("evaluate.py", work, data)
  assert out.returncode == 2, out.stderr[-3000:]
  err = out.stderr.strip()
  assert len(err.splitlines()) == 1, err
  assert re.search(r"stage dafi .* step 4 of the 8 configured", err), err
  assert "--config.unet.train.num_steps" in err and "--allow_unfinished" in err
  assert not (work / "report.json").exists()

  # ... or scored and marked with --allow_unfinished.
  out = _tiny("evaluate.py", work, data, "--allow_unfinished")
  assert out.returncode == 0, out.stderr[-3000:]
  report = json.loads((work / "report.json").read_text())
  assert report["stages"] == {"dafi": {"step": 4, "num_steps": 8, "unfinished": True,
                                       "num_steps_flag": "--config.unet.train.num_steps",
                                       "rewinds": [], "config_changes": []}}
  code = report["code"]
  assert re.fullmatch(r"[0-9a-f]{40}", code["commit"]) and isinstance(code["dirty"], bool)
  assert report["config"]["unet"]["train"]["num_steps"] == 8 and report["config"]["model"]
  assert report["allow_unfinished"] is True and "evaluate.py" in report["command"]
  for row in report["dafi"]["sets"]["synth-aflw"]["trained"].values():
    assert row["unfinished"] and row["unfinished_stages"] == {"dafi": {"step": 4, "num_steps": 8}}
  md = (work / "report.md").read_text()
  assert "| dafi | 4 | 8 (`--config.unet.train.num_steps`) | **unfinished** |" in md
  assert "| DAFI (68) [unfinished: dafi step 4 of 8] |" in md
  assert code["commit"] in md and '"num_steps": 8' in md
  # The packages and machine behind the numbers (issue 23), as this venv has them.
  env = report["environment"]
  assert env["packages"] == provenance.package_versions()
  assert env["packages"]["jax"] == jax.__version__ and env["devices"]["backend"] == "cpu"
  assert f"Packages and machine: Python {env['python']}; jax {jax.__version__}," in md
  # Progress, flushed as it goes; and only the 6 scored images were built.
  assert re.search(r"\[ *[0-9.]+ s\] synth-aflw: decoding 6 images", out.stdout)
  assert "building synth-aflw (6 images at 32 px)" in out.stdout
  assert "Downloading and preparing" not in out.stdout


def test_marks_follow_the_stages_a_method_rests_on():
  statuses = {"dafi": {"step": 8, "num_steps": 8, "unfinished": False},
              "landmarks": {"step": 4, "num_steps": 4, "unfinished": False},
              "cpr_h": {"step": 2, "num_steps": 2, "unfinished": False},
              "capu": {"step": 1, "num_steps": 400, "unfinished": True}}
  stages = table2.REST_ON
  assert stage_status.mark(stages["PnP-68"], statuses) == ("", {"unfinished": False})
  assert stage_status.mark(stages["CPR-H"], statuses) == ("", {"unfinished": False})
  label, fields = stage_status.mark(stages["CPRFA (CPR-H + CAPU)"], statuses)
  assert label == " [unfinished: capu step 1 of 400]"
  assert fields == {"unfinished": True,
                    "unfinished_stages": {"capu": {"step": 1, "num_steps": 400}}}
  with pytest.raises(stage_status.UnfinishedStageError, match="capu .* step 1 of the 400"):
    stage_status.check_finished({s: {**v, "num_steps_flag": "x"} for s, v in statuses.items()},
                               allow=False)
  stage_status.check_finished({"capu": statuses["capu"]}, allow=True)
  assert stage_status.steps_flag("capu") == "--config.cpr.train.num_steps"
  assert stage_status.steps_flag("landmarks") == "--config.lmnet.train.num_steps"


def test_git_state_without_git_or_repository(tmp_path, monkeypatch):
  assert provenance.git_state(str(tmp_path)) == {"commit": None, "dirty": None}
  here = provenance.git_state(str(ROOT))
  assert re.fullmatch(r"[0-9a-f]{40}", here["commit"])
  monkeypatch.setenv("PATH", str(tmp_path))           # no git executable at all
  assert provenance.git_state(str(ROOT)) == {"commit": None, "dirty": None}


def test_the_report_lists_each_stages_rewinds_and_resumes_with_changes(tmp_path):
  from cprfa_jax.train import history
  h = history.History(str(tmp_path / "capu"))
  (tmp_path / "capu").mkdir()
  h.write("start", 0)
  h.write("rewind", 40, restored_step=25, skipped_batch=33, loss=float("nan"), grad_norm=float("nan"))
  h.write("resume", 50, changed={"optim.lr": [0.003, 0.0003]})
  st = stage_status.status(tiny_config.get_config(), "capu", 50, str(tmp_path))
  assert st["rewinds"] == [{"step": 40, "restored_step": 25, "skipped_batch": 33}]
  assert st["config_changes"] == [{"step": 50, "changed": {"optim.lr": [0.003, 0.0003]}}]
  md = stage_status.table_md({"capu": st})
  assert "batch 33 at step 40" in md and "optim.lr 0.003 → 0.0003" in md
