"""The whole CPRFA pipeline as train.py runs it: `config.stages` in order, each in
workdir/<stage>, each stage handed what the earlier ones produced.

    dafi       HS-U-Net (§2.1), then the vertex selection of §2.2 on the reference set
               (workdir/dafi/selection.npz)
    landmarks  the heatmap landmark network (FAN-3D's role in §2.5)
    cpr        CPR(C): DAFI CPR, round 1          } regressors of Eq. 4-8, trained on the U-Net's
    cpr_h      CPR-H: + landmark CPR fusion        } DAFIs (or corrupted true DAFIs) and the
    capu       CPRFA: round 2 on the frozen CPR-H  } landmark network's points

Every stage resumes from its own last checkpoint and is skipped once trained, so an interrupted
pipeline restarts where it stopped.
"""

from __future__ import annotations

import time

from cprfa_jax.train import loop
from cprfa_jax.train.selection import ensure_selection
from cprfa_jax.train.stages import dafi, landmarks, regressors
from cprfa_jax.workdirs import (
  is_trained,
  stage_config,
  stage_dir,
  stage_flag,
)

ORDER = ("dafi", "landmarks", "cpr", "cpr_h", "capu")
NEEDS = {"cpr": ("dafi",), "cpr_h": ("dafi", "landmarks"), "capu": ("dafi", "landmarks", "cpr_h")}


def check_stages(stages) -> None:
  stages = tuple(stages)
  unknown = [s for s in stages if s not in ORDER]
  if unknown:
    raise ValueError(f"--config.stages: unknown {unknown}; choose from {ORDER}")
  if list(stages) != sorted(stages, key=ORDER.index):
    raise ValueError(f"--config.stages={stages}: stages must run in the order {ORDER}")


def run_stage(config, root, stage, model3d, log=print, config_file="CONFIG"):
  try:
    _run_stage(config, root, stage, model3d, log)
  except loop.NonFiniteLossError as e:
    # Name the flag that sets *this* stage's rate and a command that resumes this stage alone.
    optim = stage_config(config, stage).optim
    raise loop.NonFiniteLossError(
        f"stage {stage}: {e} To resume it alone with a lower learning rate: .venv/bin/python train.py "
        f"--config {config_file} --workdir {root} --config.stages='(\"{stage}\",)' "
        f"{stage_flag(stage, 'optim.lr')}={optim.lr / 10:g} "
        f"{stage_flag(stage, 'optim.lr_end')}={optim.lr_end / 10:g} (or "
        f"{stage_flag(stage, 'train.on_nonfinite')}=rewind to skip the batch)") from e


def _run_stage(config, root, stage, model3d, log=print):
  view = stage_config(config, stage)
  sdir = stage_dir(root, stage)
  for dep in NEEDS.get(stage, ()):
    if not is_trained(root, dep):
      raise FileNotFoundError(f"stage {stage} needs stage {dep} trained in {stage_dir(root, dep)}: "
                              f"add it to --config.stages")
  log(f"== stage {stage} -> {sdir}")
  if stage == "dafi":
    dafi.run(view, sdir, model3d, log=log)
    ensure_selection(config, root, model3d, log)
  elif stage == "landmarks":
    landmarks.run(view, sdir, model3d, log=log)
  else:
    regressors.run(config, root, model3d, stage, ensure_selection(config, root, model3d, log),
                   log=log)


def run(config, root, model3d, log=print, config_file="CONFIG"):
  """Trains `config.stages` in order; `config_file` only names the config in error messages."""
  check_stages(config.stages)
  start = time.monotonic()
  for i, stage in enumerate(config.stages):
    # The run's progress line: which stage of how many, and the time so far (each stage's own
    # lines add steps/s and its ETA).
    log(f"[pipeline] stage {i + 1}/{len(config.stages)}: {stage}, "
        f"{(time.monotonic() - start) / 60:.1f} min so far")
    run_stage(config, root, stage, model3d, log, config_file)
  log(f"[pipeline] {len(config.stages)} stages done in {(time.monotonic() - start) / 60:.1f} min")
