"""The workdir, once: each stage's slice of the config, its directory, whether it is trained,
its parameters (the CAPU round-1 merge included) and the vertex selection.

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

import json
import os

import ml_collections
import numpy as np

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


def history_rows(stage_workdir: str) -> list[dict]:
  """The rows of a stage's history.jsonl (`train.history`: runs, resumes, rewinds); [] when the
  stage never ran."""
  path = os.path.join(stage_workdir, "history.jsonl")
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def is_trained(workdir: str, stage: str) -> bool:
  """A stage has a checkpoint directory in the workdir (train.py created one)."""
  return os.path.isdir(os.path.join(stage_dir(workdir, stage), "checkpoints"))


def restore(config, workdir: str, stage: str, config_file: str = "CONFIG"):
  """(params, step) of a stage's latest checkpoint, onto one local device. Without one, the
  error names the workdir (the one train.py and evaluate.py take) and the command that trains
  it; a config that changes what the parameters mean is refused by name (`train.checkpoint`)."""
  # orbax is imported here, not at the top, so that inference code importing this module
  # (`cprfa_jax.predict`) does not load the training stack until it restores something.
  from cprfa_jax.train import checkpoint  # pylint: disable=import-outside-toplevel
  try:
    return checkpoint.restore_params(stage_dir(workdir, stage),
                                     stage_config(config, stage).to_dict())
  except FileNotFoundError:
    raise FileNotFoundError(
        f"{workdir}: stage {stage} has no checkpoint in {stage_dir(workdir, stage)}; train it "
        f"first: .venv/bin/python train.py --config {config_file} --workdir {workdir}") from None


def params_of(config, workdir: str, stage: str):
  """The trained parameters of a stage (`restore` without the step)."""
  return restore(config, workdir, stage)[0]


REGRESSOR_STAGES = ("cpr", "cpr_h", "capu")


def regressor_params(config, workdir: str, stage: str, config_file: str = "CONFIG"):
  """(params, {stage: step}) of a regressor stage as the network applies them: capu trains round
  2 only (on the frozen CPR-H), so its parameters get CPR-H's round 1 merged in."""
  params, step = restore(config, workdir, stage, config_file)
  steps = {stage: step}
  if stage == "capu":
    round1, steps["cpr_h"] = restore(config, workdir, "cpr_h", config_file)
    params = {"stages_round1": round1["stages_round1"], **params}
  return params, steps


def selection_file(workdir: str) -> str:
  """workdir/dafi/selection.npz: §2.2's C selected vertices and the CPR layout."""
  return os.path.join(stage_dir(workdir, "dafi"), "selection.npz")


def read_selection(workdir: str, num_selected: int | None = None) -> dict:
  """The saved vertex selection (selected, layout, left, right, p1, p2), checked against the
  config's C when `num_selected` is given."""
  path = selection_file(workdir)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no vertex selection; train the dafi stage first")
  with np.load(path) as f:
    sel = dict(f)
  if num_selected is not None and sel["selected"].shape != (num_selected,):
    raise ValueError(f"{path} holds {sel['selected'].shape[0]} vertices but "
                     f"--config.eval.num_selected={num_selected}; delete the file to select again")
  return sel
