"""The workdir, once: each stage's slice of the config, its directory, whether it is trained,
its parameters (the CAPU round-1 merge included) and the vertex selection.

One config file describes the whole pipeline (`config.stages`, run in order by train.py). Every
stage has its own block (`unet`, `lmnet`, `cpr`) with its own `train` / `optim` schedule, so
its flags are `--config.<block>.train.*` for every stage alike (`stage_flag`). `stage_config`
hands the shared loop the stage's view: the blocks the stage's parameters depend on, with the
stage's schedule as the view's `train` / `optim` (moved there, one rule for every stage, so the
loop reads one place), so a stage's checkpoint is refused only when something that matters to
*that* stage changed (editing the regressor settings does not orphan the U-Net).

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

# stage name -> (config block with its train/optim; the blocks its parameters depend on).
# Blocks not listed in a stage's dependencies are dropped from its view.
STAGE_BLOCKS = {
    "dafi": ("unet", ("unet",)),
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
            "cpr.num_selected"),
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
  d = config.to_dict()
  # The stage's schedule moves to the view's top level, where the loop reads it; the other
  # stages' schedules go with their blocks (or stay in blocks the stage depends on, unused).
  schedule = {k: d[block].pop(k) for k in ("train", "optim")}
  for name in PIPELINE_BLOCKS:
    if name in keep:
      for k in ("train", "optim"):
        d[name].pop(k, None)
  c = ml_collections.ConfigDict({**d, **schedule})
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
  "--config.cpr.optim.lr"; a view's own keys, for a config that is no stage's view, as they
  are."""
  if stage not in STAGE_BLOCKS:
    return f"--config.{key}"
  return f"--config.{STAGE_BLOCKS[stage][0]}.{key}"


def view_flag(view, key: str) -> str:
  """`stage_flag` of a stage view's `train` / `optim` key (the loop's and the trainers' error
  messages name the flag a user passes)."""
  return stage_flag(view.get("stage"), key)


# Keys of stage views saved by code before every schedule had its block (issue 20): the
# saved config is read through these, so an old checkpoint keeps loading and is still refused
# where its parameters' meaning differs. {old dotted prefix: new}.
RENAMED_KEYS = {"eval.num_selected": "cpr.num_selected"}


def upgrade_saved_view(saved: dict) -> dict:
  """A stage view as older code saved it -> as `stage_config` makes it now: C under
  cpr.num_selected (dropped from views without a cpr block), and the stage's schedule only at
  the top level (older views also kept a copy in the stage's block)."""
  out = json.loads(json.dumps(saved))
  for old, new in RENAMED_KEYS.items():
    *opath, okey = old.split(".")
    *npath, nkey = new.split(".")
    src = out
    for k in opath:
      src = src.get(k, {}) if isinstance(src, dict) else {}
    if isinstance(src, dict) and okey in src:
      value = src.pop(okey)
      if npath[0] in out:              # views without the new key's block (dafi's) drop it
        dst = out
        for k in npath:
          dst = dst.setdefault(k, {})
        dst.setdefault(nkey, value)
  if out.get("stage") in STAGE_BLOCKS:
    for name in STAGE_BLOCKS[out["stage"]][1]:
      if isinstance(out.get(name), dict):
        for k in ("train", "optim"):
          out[name].pop(k, None)
  return out


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


def regressor_params(config, workdir: str, stage: str, config_file: str = "CONFIG",
                     cpr_h_params=None):
  """(params, {stage: step}) of a regressor stage as the network applies them: capu trains round
  2 only (on the frozen CPR-H), so its parameters get CPR-H's round 1 merged in (from
  `cpr_h_params` when the caller restored them already, else from the workdir)."""
  params, step = restore(config, workdir, stage, config_file)
  steps = {stage: step}
  if stage == "capu":
    if cpr_h_params is None:
      cpr_h_params, steps["cpr_h"] = restore(config, workdir, "cpr_h", config_file)
    params = {"stages_round1": cpr_h_params["stages_round1"], **params}
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
                     f"--config.cpr.num_selected={num_selected}; delete the file to select again")
  return sel
