"""Evaluate a trained CPRFA pipeline (train.py's workdir) and write its reports into it.

    .venv/bin/python evaluate.py --config configs/quickstart.py --workdir runs/quickstart

--workdir is the root train.py was given (the stages live in its subfolders). Table 1 (§3.3,
stage dafi): NME / ADR of DAFI vertex detection per |yaw| bin for the 68 landmark vertices, all
vertices and the C selected ones (dafi_examples_<set>.png: input | true DAFI | predicted DAFI |
predicted mask). Table 2 and the ablation (§3.4-3.5, when the landmark and regressor stages are
trained): NME of the fitted landmarks per |yaw| bin for PnP-68, PnP + DAFI(C), online LM,
CPR(C), CPR-H and CPRFA on every eval set; ced_<set>.png (Fig. 5), fits_<set>.png (Fig. 6),
cpr_channels_<set>.png (Fig. 3), per_image_<set>.csv (NME per method, confidence, failure flag).
All tables go to report.md and report.json and are printed, with what was evaluated: each
stage's checkpoint step and configured steps, the git commit of the code, the config, and the
package versions, processor and devices (checked against requirements-lock.txt by readme_table).
A stage whose checkpoint is short of its configured steps is refused unless --allow_unfinished
is given; its rows are then marked unfinished.
"""

import json
import os
import time

from absl import app, flags, logging
from ml_collections import config_flags

from cprfa_jax import cli

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file the workdir was trained with (configs/*.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "The training run's root directory (train.py's "
                               "--workdir; the stages are its subfolders).")
_UNTRAINED = flags.DEFINE_bool("compare_untrained", False,
                               "Also evaluate the untrained network (the same initialisation).")
_ALLOW = flags.DEFINE_bool("allow_unfinished", False,
                           "Score stages whose checkpoint is short of their configured steps, "
                           "marking their rows, instead of refusing.")
flags.mark_flags_as_required(["config", "workdir"])
REPO = os.path.dirname(os.path.abspath(__file__))


def progress():
  """log(message): one flushed line with the seconds since evaluate.py started."""
  t0 = time.time()
  return lambda message: print(f"[{time.time() - t0:6.1f} s] {message}", flush=True)


def checkpoints(config, root, config_file):
  """Restores what will be scored: (U-Net params, {regressor stage: params}, {stage: status})
  for dafi, and landmarks and the regressors when a regressor is trained."""
  # pylint: disable=import-outside-toplevel
  from cprfa_jax import workdirs
  from cprfa_jax.evaluate import stage_status, table2
  from cprfa_jax.train import pipeline
  unet, unet_step = workdirs.restore(config, root, "dafi", config_file)
  steps = {"dafi": unet_step}
  trained, reg_steps = table2.trained_regressors(config, root, config_file)
  lm_params = None
  # The observer runs the landmark network, PnP-68 scores it, and Table 1 has its row.
  if trained or workdirs.is_trained(root, "landmarks"):
    lm_params, steps["landmarks"] = workdirs.restore(config, root, "landmarks", config_file)
  steps.update(reg_steps)
  statuses = {s: stage_status.status(config, s, steps[s], root) for s in pipeline.ORDER if s in steps}
  return unet, trained, statuses, lm_params


def evaluated_md(meta) -> list[str]:
  # pylint: disable=import-outside-toplevel
  from cprfa_jax.evaluate import stage_status
  from cprfa_jax.report import provenance
  return ["## What was evaluated\n", stage_status.table_md(meta["stages"]),
          f"Code: {provenance.describe(meta['code'])} ({REPO}).  ",
          f"Command: `{meta['command']}`  ",
          f"Packages and machine: {provenance.describe_environment(meta['environment'])}.  ",
          "Config: below, and in report.json.\n"]


def main(argv):
  if len(argv) > 1:
    cli.fail("evaluate.py", f"unexpected arguments {argv[1:]}; config values go as "
                            "--config.KEY=VALUE")
  logging.set_verbosity(logging.ERROR)
  # Imported after the flags are parsed: --help and a mistyped flag are answered without jax
  # (`cli.flags_parser`). pylint: disable=import-outside-toplevel
  from cprfa_jax import mm
  from cprfa_jax.evaluate import stage_status, table1, table2
  from cprfa_jax.report import provenance
  from cprfa_jax.train import checkpoint, selection
  config, root = _CONFIG.value, _WORKDIR.value
  config_file = config_flags.get_config_filename(flags.FLAGS["config"])
  log = progress()
  try:
    model3d = cli.load_model(config)
    log(f"reading the checkpoints in {root} ...")
    unet, trained, statuses, lm_params = checkpoints(config, root, config_file)
    stage_status.check_finished(statuses, _ALLOW.value)
    meta = {"stages": statuses, "code": provenance.git_state(REPO),
            "environment": provenance.environment(),
            "command": provenance.command_line(), "config_file": config_file,
            "allow_unfinished": _ALLOW.value, "config": provenance.jsonable(config.to_dict())}
    sel = selection.ensure_selection(config, root, model3d, log)
    dafi_report, md1 = table1.evaluate(config, root, model3d, unet, sel, statuses,
                                       _UNTRAINED.value, log, lm_params)
    fit_rep, md2 = table2.evaluate(config, root, model3d, trained, sel, statuses, log)
    md = [f"# CPRFA report ({root})\n"] + evaluated_md(meta) + md1 + md2
    config_md = ["## Config\n", "```json", json.dumps(meta["config"], indent=1), "```\n"]
    with open(os.path.join(root, "report.json"), "w") as f:
      json.dump(provenance.strict_json({**meta, "dafi": dafi_report, "fit": fit_rep}), f,
                indent=1, allow_nan=False)
    with open(os.path.join(root, "report.md"), "w") as f:
      f.write("\n".join(md + config_md))
    log(f"wrote {os.path.join(root, 'report.md')} and report.json")
    print("\n".join(md))
  except (checkpoint.ConfigMismatchError, FileNotFoundError, mm.ModelFormatError,
          ValueError) as e:
    cli.fail("evaluate.py", f"{type(e).__name__}: {e}")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.flags_parser("evaluate.py", __doc__))
