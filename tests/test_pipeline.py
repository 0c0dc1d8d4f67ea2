"""The whole pipeline from the command line on the `tiny` config: train.py runs every stage
(U-Net, selection, landmark network, CPR(C), CPR-H, CAPU), evaluate.py writes Table 1, Table 2
with every method, the figures and per-image results; a second train.py resumes nothing."""

import csv
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from configs import tiny
from cprfa_jax import pipeline

ROOT = pathlib.Path(__file__).resolve().parents[1]
METHODS = {"PnP-68", "PnP + DAFI(C)", "Online LM", "CPR(C)", "CPR-H", "CPRFA (CPR-H + CAPU)",
           "CPRFA, no landmarks"}


def _run(script, work, data, *flags):
  return subprocess.run([sys.executable, str(ROOT / script), "--config", str(ROOT / "configs/tiny.py"),
                         "--workdir", str(work), f"--config.data.data_dir={data}", *flags],
                        capture_output=True, text=True, timeout=1500, cwd=ROOT)


def test_train_and_evaluate_the_whole_pipeline(tmp_path):
  work, data = tmp_path / "run", tmp_path / "data"
  out = _run("train.py", work, data)
  assert out.returncode == 0, out.stderr[-3000:]
  for stage in pipeline.ORDER:
    assert f"== stage {stage}" in out.stdout
    assert (work / stage / "checkpoints").is_dir()
  sel = np.load(work / "dafi" / "selection.npz")
  assert sel["selected"].shape == (64,) and sel["layout"].shape == (3, 32)

  out = _run("evaluate.py", work, data, "--compare_untrained")
  assert out.returncode == 0, out.stderr[-3000:]
  report = json.loads((work / "report.json").read_text())
  t1 = report["dafi"]["sets"]["synth-aflw"]
  assert set(t1["trained"]) == {"DAFI", "DAFI all", "DAFI CPR"} and "untrained" in t1
  t2 = report["fit"]["sets"]["synth-aflw"]
  assert set(t2["methods"]) == METHODS
  for name, row in t2["methods"].items():
    assert len(row["nme_bins"]) == 3 and 0 <= row["nme_mean"] <= 100, name
  assert "Table 2" in out.stdout and "CPRFA (CPR-H + CAPU)" in out.stdout
  for png in ("dafi_examples", "ced", "fits", "cpr_channels"):
    assert (work / f"{png}_synth-aflw.png").stat().st_size > 0, png
  with open(work / "per_image_synth-aflw.csv") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 6 and {"confidence", "flagged_failure"} <= set(rows[0])

  # Everything is trained: a second run only checks and restores.
  again = _run("train.py", work, data)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "initialised a new run" not in again.stdout


def test_stages_out_of_order_or_missing_are_refused(tmp_path):
  with pytest.raises(ValueError, match="order"):
    pipeline.check_stages(("cpr", "dafi"))
  with pytest.raises(ValueError, match="unknown"):
    pipeline.check_stages(("dafi", "fan3d"))
  out = _run("train.py", tmp_path / "w", tmp_path / "d", "--config.stages=('cpr',)")
  assert out.returncode == 2 and "needs stage dafi" in out.stderr
