"""workdirs: each stage's view of the config (its schedule from its own block, one rule for every
stage), the flags that name a stage's keys, and checkpoints saved by code before every schedule
had its block: they keep loading, and a different C is still refused."""

import copy

import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from cprfa_jax import workdirs
from cprfa_jax.train import checkpoint


def _old_layout_view(config, stage):
  """A stage view as the code before the change saved it: the U-Net's schedule top level in
  the full config, C at eval.num_selected, and the stage's schedule *copied* to the view's top
  level (its block kept its own copy)."""
  d = copy.deepcopy(config.to_dict())
  d["train"], d["optim"] = d["unet"].pop("train"), d["unet"].pop("optim")
  d["eval"]["num_selected"] = d["cpr"].pop("num_selected")
  block, keep = workdirs.STAGE_BLOCKS[stage]
  if block != "unet":
    d["train"], d["optim"] = copy.deepcopy(d[block]["train"]), copy.deepcopy(d[block]["optim"])
  for name in workdirs.PIPELINE_BLOCKS:
    if name not in keep:
      d.pop(name)
  d.pop("stages")
  d["stage"] = stage
  d["identity_keys"] = ["stage"] + [k.replace("cpr.num_selected", "eval.num_selected")
                                    for k in workdirs.IDENTITY[stage]]
  return d


@pytest.mark.parametrize("stage", sorted(workdirs.STAGE_BLOCKS))
def test_a_stage_view_holds_its_own_schedule_once(stage):
  config = tiny.get_config()
  block = workdirs.STAGE_BLOCKS[stage][0]
  config[block].optim.lr = 0.123                 # a value no other block has
  view = workdirs.stage_config(config, stage)
  assert view.optim.lr == 0.123
  assert view.train.to_dict() == config[block].train.to_dict()
  for name in workdirs.PIPELINE_BLOCKS:           # no schedule left inside any block
    if name in view:
      assert "train" not in view[name] and "optim" not in view[name], name
  assert workdirs.stage_flag(stage, "optim.lr") == f"--config.{block}.optim.lr"
  assert workdirs.view_flag(view, "train.num_steps") == f"--config.{block}.train.num_steps"
  assert config[block].optim.lr == 0.123 and "train" in config[block]   # the config untouched


@pytest.mark.parametrize("stage", sorted(workdirs.STAGE_BLOCKS))
def test_an_old_layout_view_reads_as_the_new_one(stage):
  config = tiny.get_config()
  new = workdirs.stage_config(config, stage).to_dict()
  old = _old_layout_view(config, stage)
  assert checkpoint.config_changes(workdirs.upgrade_saved_view(old), new) == ([], {})
  if stage in workdirs.REGRESSOR_STAGES:        # C is a regressor identity key: still refused
    old["eval"]["num_selected"] = 32
    refused, _ = checkpoint.config_changes(workdirs.upgrade_saved_view(old), new)
    assert refused == ["cpr.num_selected"]


def test_an_old_checkpoint_restores_and_a_changed_c_is_refused(tmp_path):
  config = tiny.get_config()
  params = {"w": jnp.arange(3.0)}
  mngr = checkpoint.manager(str(tmp_path / "cpr"), 1, 1)
  checkpoint.save(mngr, 5, {"params": params, "step": 5}, _old_layout_view(config, "cpr"),
                  force=True)
  mngr.wait_until_finished()
  mngr.close()
  got, step = workdirs.restore(config, str(tmp_path), "cpr")
  assert step == 5
  np.testing.assert_array_equal(got["w"], np.arange(3.0))
  config.cpr.num_selected = 32
  with pytest.raises(checkpoint.ConfigMismatchError, match="cpr.num_selected: saved 64 vs now 32"):
    workdirs.restore(config, str(tmp_path), "cpr")
