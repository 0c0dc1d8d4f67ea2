"""What every stage shares: its slice of the config and its directory in the workdir.

One config file describes the whole pipeline (`config.stages`, run in order by train.py). The
U-Net stage reads the top-level `train` / `optim`; every later stage has its own block
(`lmnet`, `cpr`) with its own `train` / `optim`. `stage_config` hands the shared loop a config
whose `train` / `optim` are the stage's and which holds only what the stage's parameters depend
on, so a stage's checkpoint is refused only when something that matters to *that* stage
changed (editing the regressor settings does not orphan the U-Net).

Within that view, only the keys of `IDENTITY` (the stage's and its dependencies') are refused on
resume: they change what the parameters mean (the model, network sizes, C and the layout, q).
Schedules, learning rates, logging and the training data may change; the loop records every such
change in the stage's `history.jsonl`.
"""

from __future__ import annotations

import os

import ml_collections

# stage name -> (config block with its train/optim, or None for the top level; the blocks its
# parameters depend on). Stages not listed in a stage's dependencies are dropped from its view.
STAGE_BLOCKS = {
    "dafi": (None, ("unet",)),
    "landmarks": ("lmnet", ("lmnet",)),
    "cpr": ("cpr", ("unet", "cpr")),             # CPR(C): DAFI CPR, round 1 (§3.4's CPR(512))
    "cpr_h": ("cpr", ("unet", "lmnet", "cpr")),  # CPR-H: + 68-landmark CPR fusion (§2.5)
    "capu": ("cpr", ("unet", "lmnet", "cpr")),   # CPR-H + CAPU = CPRFA: round 2 on frozen CPR-H
}
PIPELINE_BLOCKS = ("unet", "lmnet", "cpr")

# Keys whose change makes a stage's checkpoint mean something else (`train.checkpoint`). The
# regressors read the U-Net's DAFIs through the selected vertices (C) and, when fused, the
# landmark network's points, so their identity includes those stages'.
_OWN = {
    "dafi": ("model", "data.image_size", "unet.widths"),
    "landmarks": ("model", "data.image_size", "lmnet.widths", "lmnet.sigma"),
    "cpr": ("cpr.num_stages", "cpr.width", "cpr.features", "cpr.hidden", "cpr.num_path",
            "eval.num_selected"),
}
IDENTITY = {
    "dafi": _OWN["dafi"],
    "landmarks": _OWN["landmarks"],
    "cpr": _OWN["dafi"] + _OWN["cpr"],
    "cpr_h": _OWN["dafi"] + _OWN["landmarks"][2:] + _OWN["cpr"],
    "capu": _OWN["dafi"] + _OWN["landmarks"][2:] + _OWN["cpr"],
}


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
  c.identity_keys = ("stage",) + IDENTITY[stage]
  return c


def stage_flag(stage: str, key: str) -> str:
  """The command-line flag of a stage's `train` / `optim` key: ("capu", "optim.lr") ->
  "--config.cpr.optim.lr" (the U-Net's are top level)."""
  block = STAGE_BLOCKS[stage][0]
  return f"--config.{block}.{key}" if block else f"--config.{key}"


def stage_dir(workdir: str, stage: str) -> str:
  """workdir/<stage>: each stage's checkpoints, logs and products (dafi/selection.npz)."""
  return os.path.join(workdir, stage)


def params_of(config, workdir: str, stage: str):
  """The trained parameters of a stage (FileNotFoundError naming it if untrained), restored
  onto one local device."""
  from cprfa_jax.train import checkpoint  # pylint: disable=import-outside-toplevel (orbax)
  return checkpoint.restore_params(stage_dir(workdir, stage),
                                   stage_config(config, stage).to_dict())[0]


def selection_file(workdir: str) -> str:
  """workdir/dafi/selection.npz: §2.2's C selected vertices and the CPR layout."""
  return os.path.join(stage_dir(workdir, "dafi"), "selection.npz")
