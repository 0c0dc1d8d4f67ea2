"""benchmarks/device_check.sh's CPU dry run (issue 23): the accelerator check runs end to end on
the tiny sizes, through the same shell script a GPU host runs, without the data stack (grain,
tensorflow_datasets, tensorboardX: the lent GPU's image has none of them), and reports every
case the issue asks for."""

import json
import os
import pathlib
import subprocess
import sys

import jax

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Imported at interpreter start in the subprocess (PYTHONPATH): any import of these fails.
BLOCKER = "import sys\nsys.modules.update(grain=None, tensorflow_datasets=None, tensorboardX=None)\n"


def test_dry_run_reports_every_case_without_the_data_stack(tmp_path):
  (tmp_path / "site").mkdir()
  (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER)
  out = tmp_path / "device_check.json"
  env = dict(os.environ, PYTHON=sys.executable, JAX_PLATFORMS="cpu",
             PYTHONPATH=str(tmp_path / "site"))
  run = subprocess.run(["bash", str(ROOT / "benchmarks" / "device_check.sh"), "--dry_run",
                        "--seconds", "0.05", "--out", str(out)],
                       env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
  assert run.returncode == 0, run.stderr[-3000:]
  res = json.loads(out.read_text())
  assert json.loads(run.stdout) == res
  tiny = res["tiny"]
  cases = ["unet_train_batch2", "unet_train_batch4", "capu_train_batch1"]
  for case in cases:
    assert tiny[case]["finite_loss"], case
    assert tiny[case]["steps"] >= 2 and tiny[case]["compiled_mib"] > 0, case
  # A batch of 4 holds twice the U-Net's activations of a batch of 2.
  assert tiny["unet_train_batch4"]["compiled_mib"] > tiny["unet_train_batch2"]["compiled_mib"]
  assert tiny["predict_batch1"]["steps"] >= 2 and tiny["predict_batch2"]["steps"] >= 2
  env_rec = res["environment"]
  assert env_rec["packages"]["jax"] == jax.__version__ and env_rec["device_kind"] == "cpu"
  assert res["memory"]["device_peak_mib"] is None   # the CPU reports no device memory ...
  assert res["memory"]["process_peak_rss_mib"] > 100   # ... so the process's peak is given


def test_the_data_stack_is_really_blocked_in_that_subprocess(tmp_path):
  (tmp_path / "sitecustomize.py").write_text(BLOCKER)
  env = dict(os.environ, PYTHONPATH=str(tmp_path))
  run = subprocess.run([sys.executable, "-c", "import grain"], env=env, capture_output=True,
                       text=True, timeout=60)
  assert run.returncode != 0 and "ModuleNotFoundError" in run.stderr
