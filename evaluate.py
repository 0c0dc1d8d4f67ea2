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
stage's checkpoint step and configured steps, the git commit of the code and the config.
A stage whose checkpoint is short of its configured steps is refused unless --allow_unfinished
is given; its rows are then marked unfinished.
"""

import json
import os
import time

import jax
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from cprfa_jax import cli, metrics, mm, observe, workdirs
from cprfa_jax.data import aflw, datasets, tfds_io
from cprfa_jax.evaluate import methods, stage_status, table1, table2
from cprfa_jax.nets import build
from cprfa_jax.report import draw, provenance, published
from cprfa_jax.train import checkpoint, pipeline, selection
from cprfa_jax.train.stages import regressors

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


def is_benchmark(source) -> bool:
  """A set scored by a benchmark protocol (AFLW's 21 points, COFW-68: `data.aflw`,
  `data.cofw`), recognised by its metadata: it has no 3DMM ground truth, so no Table 1."""
  return (getattr(source, "metadata", None) or {}).get("protocol") in metrics.PROTOCOLS


def eval_source(config, model3d, name, log):
  """An eval set, built (only as many images as are scored) if it is not yet. A tfds set is
  checked against the config: its image size, and its model when it carries 3DMM ground truth."""
  if not name.startswith("tfds:"):
    return datasets.ensure_set(model3d, name, config.data.data_dir, config.data.image_size,
                               config.data.num_eval or None, log=log)
  src = tfds_io.read_dataset(name.split(":", 1)[1], config.data.data_dir, split="test")
  size = src.metadata.get("image_size")
  if is_benchmark(src) and size != config.data.image_size:
    raise ValueError(f"{name} ({src.path}) was built at {size} px but --config.data.image_size="
                     f"{config.data.image_size}: rebuild it with --image-size "
                     f"{config.data.image_size}")
  if "alpha_id" in src.spec:
    tfds_io.check_model(src, model3d, config.data.image_size, name)
  return src


def table_md(title, rows, mark="", marks=None) -> str:
  """`mark`: the suffix of rows resting on the U-Net; `marks`: {label: suffix} for others."""
  lines = [f"### {title}", "",
           "| Method (num. of vert.) | [0°, 30°] | (30°, 60°] | (60°, 90°] | Mean | Std | Failure |",
           "|---|---|---|---|---|---|---|"]
  pair = lambda n, a: f"{methods.fmt(n)}/{methods.fmt(a, '.1f')}"
  for label, r in rows:
    cells = [pair(n, a) for n, a in zip(r["nme_bins"], r["adr_bins"])]
    lines.append(f"| {label} ({r['num_vertices']}){(marks or {}).get(label, mark)} | " +
                 " | ".join(cells) +
                 f" | {pair(r['nme_mean'], r['adr_mean'])} | {pair(r['nme_std'], r['adr_std'])}"
                 f" | {r['failure']:.2f} |")
  return "\n".join(lines) + ("\n\nNME (%) / ADR (%) of DAFI vertex detection, as the paper's "
                             "Table 1; the landmark network's row is its FAN-3D row (68 points, "
                             "ADR 100% by construction).\n")


def evaluate_dafi(config, root, model3d, params, statuses, compare_untrained, log, lm_params=None):
  """Table 1; returns (report dict, markdown lines). With the landmark network's parameters,
  its 68 points are Table 1's FAN-3D row. Benchmark sets (no 3DMM ground truth) are skipped."""
  runs = [("trained", params)]
  if compare_untrained:
    first = eval_source(config, model3d, config.data.eval_sets[0], log)[0]
    init = build.unet_network(config).init(jax.random.PRNGKey(config.seed),
                                     build.preprocess(first["image"][None]))["params"]
    runs.append(("untrained", init))
  t0 = time.time()
  sel = selection.ensure_selection(config, root, model3d, log)
  step = statuses["dafi"]["step"]
  report = {"step": step, "model": model3d.name,
            "num_vertices": model3d.num_vertices, "selection": {
                "C": int(config.eval.num_selected), "reference_images": config.data.num_reference,
                "mean_p1_selected": float(sel["p1"][sel["selected"]].mean()),
                "mean_p2_selected": float(sel["p2"][sel["selected"]].mean())}, "sets": {}}
  mark, fields = stage_status.mark(("dafi",), statuses)
  md = [f"## Table 1: DAFI vertex detection (U-Net step {step}, model {model3d.name}, "
        f"V = {model3d.num_vertices})\n"]
  subsets = {"DAFI": np.asarray(model3d.landmarks_68), "DAFI all": np.arange(model3d.num_vertices),
             "DAFI CPR": sel["selected"]}
  lm_net = None if lm_params is None else (build.landmarks(config), lm_params)
  lm_mark, lm_fields = stage_status.mark(("landmarks",), statuses)
  for set_name in config.data.eval_sets:
    src = eval_source(config, model3d, set_name, log)
    if is_benchmark(src):
      report["sets"][set_name] = {"skipped": f"{src.metadata['protocol']} benchmark set: no "
                                             "ground-truth DAFI (scored in Table 2)"}
      md.append(f"### {set_name}\n\nSkipped: {src.metadata['protocol']} is a benchmark set with no "
                "ground-truth DAFI; it is scored in Table 2.\n")
      continue
    num = min(config.data.num_eval or len(src), len(src))
    report["sets"][set_name] = {"num_images": num}
    for label, p in runs:
      log(f"{set_name}: decoding {num} images with the {label} U-Net ...")
      dec = observe.decode_set(config, p, model3d, src, num,
                                 lm_net if label == "trained" else None)
      rows = [(name, table1.subset_table(dec, idx)) for name, idx in subsets.items()]
      if label == "trained":
        for _, r in rows:
          r.update(fields)
        if "lm_pred" in dec:
          rows.insert(0, ("Landmark network", {**table1.landmark_table(dec), **lm_fields}))
      report["sets"][set_name][label] = dict(rows)
      md.append(table_md(f"{set_name}, {label} network ({num} images)", rows,
                         mark if label == "trained" else "",
                         {"Landmark network": lm_mark} if label == "trained" else {}))
      if label == "trained" and published.protocol_of(src.metadata if hasattr(src, "metadata")
                                                      else None) == "aflw2000":
        report["sets"][set_name]["published"] = {"FAN-3D": {**published.TABLE1_FAN3D,
                                                            "status": published.NOTE}}
        f = published.TABLE1_FAN3D
        md.append(f"Published, not run: FAN-3D (68) {f['nme_mean']:.2f}/100 mean NME/ADR "
                  f"({f['source']}).\n")
      if label == "trained":
        png = os.path.join(root, f"dafi_examples_{set_name.replace(':', '_')}.png")
        draw.save_png(png, table1.picture(dec["pictures"]))
  report["seconds"] = round(time.time() - t0, 1)
  return report, md


def evaluate_fit(config, root, model3d, trained, statuses, log):
  """Table 2 and the ablation on every eval set; (report dict, markdown lines) or (None, [])
  when no regressor is trained."""
  if not trained:
    return None, []
  t0 = time.time()
  sel = selection.ensure_selection(config, root, model3d, log)
  observer = observe.Observer(config, root, model3d, with_landmarks=True)
  kappa = regressors.kappa_sample_line(config, model3d)
  report = {"stages": sorted(trained), "kappa_sample": kappa, "sets": {}}
  md = ["## Table 2: 3D face alignment (landmark NME)\n", f"Regressors: {kappa}.\n"]
  re_path = config.eval.get("aflw2000_reannotated", None)
  for set_name in config.data.eval_sets:
    src = eval_source(config, model3d, set_name, log)
    num = min(config.data.num_eval or len(src), len(src))
    re68 = None
    if re_path and (getattr(src, "metadata", None) or {}).get("source") == "aflw2000":
      log(f"{set_name}: mapping 3DDFA's re-annotated landmarks {re_path} onto its images ...")
      re68 = aflw.reannotated_points(src, re_path, num)
    r, m = table2.evaluate_set(config, model3d, set_name, src, observer, trained, sel, root,
                                   log=log, statuses=statuses, reannotated=re68)
    report["sets"][set_name] = r
    md.append(m)
  report["seconds"] = round(time.time() - t0, 1)
  return report, md


def checkpoints(config, root, config_file):
  """Restores what will be scored: (U-Net params, {regressor stage: params}, {stage: status})
  for dafi, and landmarks and the regressors when a regressor is trained."""
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
  return ["## What was evaluated\n", stage_status.table_md(meta["stages"]),
          f"Code: {provenance.describe(meta['code'])} ({REPO}).  ",
          f"Command: `{meta['command']}`  ",
          "Config: below, and in report.json.\n"]


def main(argv):
  if len(argv) > 1:
    cli.fail("evaluate.py", f"unexpected arguments {argv[1:]}; config values go as "
                            "--config.KEY=VALUE")
  logging.set_verbosity(logging.ERROR)
  config, root = _CONFIG.value, _WORKDIR.value
  config_file = config_flags.get_config_filename(flags.FLAGS["config"])
  log = progress()
  try:
    model3d = cli.load_model(config)
    log(f"reading the checkpoints in {root} ...")
    unet, trained, statuses, lm_params = checkpoints(config, root, config_file)
    stage_status.check_finished(statuses, _ALLOW.value)
    meta = {"stages": statuses, "code": provenance.git_state(REPO),
            "command": provenance.command_line(), "config_file": config_file,
            "allow_unfinished": _ALLOW.value, "config": provenance.jsonable(config.to_dict())}
    dafi_report, md1 = evaluate_dafi(config, root, model3d, unet, statuses, _UNTRAINED.value, log,
                                     lm_params)
    fit_rep, md2 = evaluate_fit(config, root, model3d, trained, statuses, log)
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
