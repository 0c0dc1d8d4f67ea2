"""Evaluate a trained CPRFA pipeline (train.py's workdir) and write its reports into it.

    python evaluate.py --config configs/quickstart.py --workdir runs/quickstart

Table 1 (§3.3, stage dafi): NME / ADR of DAFI vertex detection per |yaw| bin for the 68
landmark vertices, all vertices and the C selected ones (dafi_examples_<set>.png: input | true
DAFI | predicted DAFI | predicted mask).
Table 2 and the ablation (§3.4-3.5, when the landmark and regressor stages are trained): NME of
the fitted landmarks per |yaw| bin for PnP-68, PnP + DAFI(C), online LM, CPR(C), CPR-H and
CPRFA on every eval set; ced_<set>.png (Fig. 5), fits_<set>.png (Fig. 6),
cpr_channels_<set>.png (Fig. 3), per_image_<set>.csv (NME per method, confidence, failure flag).
All tables go to report.md and report.json and are printed.
"""

import json
import os
import sys
import time

import cv2
import jax
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from cprfa_jax import mm, pipeline
from cprfa_jax.data import datasets, tfds_io
from cprfa_jax.stages import dafi, dafi_eval, fit_report
from cprfa_jax.stages.common import stage_config, stage_dir
from cprfa_jax.train import checkpoint

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "The training run's directory.")
_UNTRAINED = flags.DEFINE_bool("compare_untrained", False,
                               "Also evaluate the untrained network (the same initialisation).")
flags.mark_flags_as_required(["config", "workdir"])


def eval_source(config, model3d, name):
  if name.startswith("tfds:"):
    return tfds_io.read_dataset(name.split(":", 1)[1], config.data.data_dir, split="test")
  return datasets.ensure_set(model3d, name, config.data.data_dir, config.data.image_size)


def table_md(title, rows) -> str:
  lines = [f"### {title}", "",
           "| Method (num. of vert.) | [0°, 30°] | (30°, 60°] | (60°, 90°] | Mean | Std | Failure |",
           "|---|---|---|---|---|---|---|"]
  for label, r in rows:
    cells = [f"{n:.2f}/{a:.1f}" for n, a in zip(r["nme_bins"], r["adr_bins"])]
    lines.append(f"| {label} ({r['num_vertices']}) | " + " | ".join(cells) +
                 f" | {r['nme_mean']:.2f}/{r['adr_mean']:.1f} | {r['nme_std']:.2f}/{r['adr_std']:.1f}"
                 f" | {r['failure']:.2f} |")
  return "\n".join(lines) + "\n\nNME (%) / ADR (%) of DAFI vertex detection, as the paper's Table 1.\n"


def evaluate_dafi(config, root, model3d, compare_untrained):
  """Table 1; returns (report dict, markdown lines)."""
  params, step = checkpoint.restore_params(stage_dir(root, "dafi"),
                                           stage_config(config, "dafi").to_dict())
  runs = [("trained", params)]
  if compare_untrained:
    first = eval_source(config, model3d, config.data.eval_sets[0])[0]
    init = dafi.network(config).init(jax.random.PRNGKey(config.seed),
                                     dafi.preprocess(first["image"][None]))["params"]
    runs.append(("untrained", init))
  t0 = time.time()
  sel = pipeline.ensure_selection(config, root, model3d)
  report = {"step": int(step), "model": model3d.name,
            "num_vertices": model3d.num_vertices, "selection": {
                "C": int(config.eval.num_selected), "reference_images": config.data.num_reference,
                "mean_p1_selected": float(sel["p1"][sel["selected"]].mean()),
                "mean_p2_selected": float(sel["p2"][sel["selected"]].mean())}, "sets": {}}
  md = [f"## Table 1: DAFI vertex detection (U-Net step {step}, model {model3d.name}, "
        f"V = {model3d.num_vertices})\n"]
  subsets = {"DAFI": np.asarray(model3d.landmarks_68), "DAFI all": np.arange(model3d.num_vertices),
             "DAFI CPR": sel["selected"]}
  for set_name in config.data.eval_sets:
    src = eval_source(config, model3d, set_name)
    num = min(config.data.num_eval or len(src), len(src))
    report["sets"][set_name] = {"num_images": num}
    for label, p in runs:
      dec = dafi_eval.decode_set(config, p, model3d, src, num)
      rows = [(name, dafi_eval.subset_table(dec, idx)) for name, idx in subsets.items()]
      report["sets"][set_name][label] = dict(rows)
      md.append(table_md(f"{set_name}, {label} network ({num} images)", rows))
      if label == "trained":
        png = os.path.join(root, f"dafi_examples_{set_name.replace(':', '_')}.png")
        cv2.imwrite(png, cv2.cvtColor(dafi_eval.picture(dec["pictures"]), cv2.COLOR_RGB2BGR))
  report["seconds"] = round(time.time() - t0, 1)
  return report, md


def evaluate_fit(config, root, model3d):
  """Table 2 and the ablation on every eval set; (report dict, markdown lines) or (None, [])
  when no regressor is trained."""
  trained = fit_report.trained_regressors(config, root, pipeline.params_of)
  if not trained:
    return None, []
  t0 = time.time()
  sel = pipeline.ensure_selection(config, root, model3d)
  observer = pipeline.Observer(config, root, model3d, with_landmarks=True)
  report, md = {"stages": sorted(trained), "sets": {}}, ["## Table 2: 3D face alignment (landmark NME)\n"]
  for set_name in config.data.eval_sets:
    src = eval_source(config, model3d, set_name)
    r, m = fit_report.evaluate_set(config, model3d, set_name, src, observer, trained, sel, root,
                                   log=lambda s: None)
    report["sets"][set_name] = r
    md.append(m)
  report["seconds"] = round(time.time() - t0, 1)
  return report, md


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  logging.set_verbosity(logging.ERROR)
  config = _CONFIG.value
  try:
    model3d = mm.load_model(config.model)
    root = _WORKDIR.value
    dafi_report, md1 = evaluate_dafi(config, root, model3d, _UNTRAINED.value)
    fit_rep, md2 = evaluate_fit(config, root, model3d)
    md = [f"# CPRFA report ({root})\n"] + md1 + md2
    with open(os.path.join(root, "report.json"), "w") as f:
      json.dump({"dafi": dafi_report, "fit": fit_rep}, f, indent=1)
    with open(os.path.join(root, "report.md"), "w") as f:
      f.write("\n".join(md))
    print("\n".join(md))
  except (checkpoint.ConfigMismatchError, FileNotFoundError, mm.ModelFormatError,
          ValueError) as e:
    print(f"evaluate.py: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
