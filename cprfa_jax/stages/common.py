"""What every stage shares: its slice of the config and its directory in the workdir.

One config file describes the whole pipeline (`config.stages`, run in order by train.py). The
U-Net stage reads the top-level `train` / `optim`; every later stage has its own block
(`lmnet`, `cpr`) with its own `train` / `optim`. `stage_config` hands the shared loop a config
whose `train` / `optim` are the stage's and which holds only what the stage's parameters depend
on, so a stage's checkpoint is refused only when something that matters to *that* stage
changed (editing the regressor settings does not orphan the U-Net).
"""

from __future__ import annotations

import os

import ml_collections

# stage name -> (config block with its train/optim, or None for the top level; the blocks its
# parameters depend on). Stages not listed in a stage's dependencies are dropped from its view.
STAGE_BLOCKS = {
    "dafi": (None, ("unet",)),
    "landmarks": ("lmnet", ("lmnet",)),
    "cpr": ("cpr", ("cpr",)),          # CPR(C): DAFI CPR, round 1 (§3.4's CPR(512))
    "cpr_h": ("cpr", ("cpr",)),        # CPR-H: + 68-landmark CPR fusion (§2.5)
    "capu": ("cpr", ("cpr",)),         # CPR-H + CAPU = CPRFA: round 2 on the frozen CPR-H (§2.4)
}
PIPELINE_BLOCKS = ("unet", "lmnet", "cpr")


def stage_config(config, stage: str) -> ml_collections.ConfigDict:
  """The config a stage trains (and checkpoints) with."""
  if stage not in STAGE_BLOCKS:
    raise ValueError(f"unknown stage {stage!r}: choose from {sorted(STAGE_BLOCKS)}")
  block, keep = STAGE_BLOCKS[stage]
  c = ml_collections.ConfigDict(config.to_dict())
  if block is not None:
    c.train = ml_collections.ConfigDict(config[block].train.to_dict())
    c.optim = ml_collections.ConfigDict(config[block].optim.to_dict())
  for name in PIPELINE_BLOCKS:
    if name not in keep and name in c:
      del c[name]
  if "stages" in c:
    del c["stages"]
  c.stage = stage
  return c


def stage_dir(workdir: str, stage: str) -> str:
  """workdir/<stage>: each stage's checkpoints, logs and products (dafi/selection.npz)."""
  return os.path.join(workdir, stage)
