"""configs/paper.py is §3.1-3.2: every number the paper fixes, asserted against the paper's
text, so neither an edit of paper.py nor a change of configs/common.py's defaults moves one; and
it refuses to start without the user's BFM."""

import os
import subprocess
import sys

import pytest

from cprfa_jax import cli, cpr

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER = os.path.join(REPO, "configs", "paper.py")
TRAIN_EPOCH = 122_450 - 1_224      # §3.1: 300W-LP less the ~1% reference images


@pytest.fixture(scope="module")
def config():
  return cli.load_config(PAPER)


def test_data_is_the_papers(config):
  assert config.model == "bfm3ddfa:"                        # the user's BFM, no default
  assert config.data.train == "tfds:cprfa_300wlp_256"       # §3.1: 300W-LP
  assert tuple(config.data.eval_sets) == (                  # §3.1: AFLW2000-3D, AFLW, COFW
      "tfds:cprfa_aflw2000_256", "tfds:cprfa_aflw_256", "tfds:cprfa_cofw68_256")
  assert config.data.num_reference == 1_224                 # §3.1: about 1% of 122,450
  assert config.data.num_eval == 0                          # whole test sets
  assert config.data.image_size == 256                      # §3.2: 256 x 256
  assert config.data.augment is True                        # §3.2: rotation, translation, scale


def test_unet_schedule_is_section_3_2(config):
  assert config.unet.train.batch_size == 4
  assert config.unet.train.num_steps * 4 == 40 * TRAIN_EPOCH     # 40 epochs
  assert (config.unet.optim.lr, config.unet.optim.lr_end) == (1e-4, 1e-7)


def test_cpr_settings_are_section_3_2(config):
  assert config.cpr.num_selected == 512                    # C
  assert cpr.cpr_layout(config.cpr.num_selected).shape == (3, 256)   # N: CPRs are 256 x 256
  assert config.cpr.num_stages == 3                         # q
  assert config.cpr.num_path == 5                           # M (10 sampling points)
  assert config.cpr.kappa == 0.1                            # κ
  assert config.cpr.max_sampled == 0                        # κ · #detected, never capped
  assert config.eval.match_dist == config.cpr.match_dist == 0.01   # §3.3's detection
  # Regressors (both rounds): batch 1, lr 1e-4 (no decay given), one epoch each.
  assert config.cpr.train.batch_size == 1
  assert config.cpr.train.num_steps == TRAIN_EPOCH
  assert config.cpr.optim.lr == config.cpr.optim.lr_end == 1e-4


def test_train_without_a_model_path_fails_in_one_line_naming_the_flag(tmp_path):
  workdir = tmp_path / "run"
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, "train.py"), "--config", PAPER, "--workdir",
       str(workdir)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
      env={**os.environ, "JAX_PLATFORMS": "cpu"})
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert proc.returncode == 2, proc.stderr
  assert len(lines) == 1 and lines[0].startswith("train.py: "), proc.stderr
  assert "bfm3ddfa" in lines[0] and "needs a path" in lines[0]
  assert "--config.model=bfm3ddfa:" in lines[0]
  assert not workdir.exists()                               # nothing trained, nothing written
