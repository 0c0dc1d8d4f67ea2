"""The smoke pipeline that tests/e2e/test_pipeline.py and tests/e2e/test_predict.py share (trained once
per session by the `smoke` fixture of conftest.py): train.py and evaluate.py as a user runs them."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_script(script, work, data, *flags, config="configs/smoke.py"):
  return subprocess.run([sys.executable, str(ROOT / script), "--config", str(ROOT / config),
                         "--workdir", str(work), f"--config.data.data_dir={data}", *flags],
                        capture_output=True, text=True, timeout=1500, cwd=ROOT)


def train_smoke(tmp):
  """(workdir, data dir, train.py's and evaluate.py's CompletedProcess)."""
  work, data = tmp / "run", tmp / "data"
  train = run_script("train.py", work, data)
  assert train.returncode == 0, train.stderr[-3000:]
  evaluate = run_script("evaluate.py", work, data, "--compare_untrained")
  assert evaluate.returncode == 0, evaluate.stderr[-3000:]
  return work, data, train, evaluate
