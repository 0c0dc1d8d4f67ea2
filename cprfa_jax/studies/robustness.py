"""The robustness study: every method of Table 2 on the same *ground-truth* DAFIs, degraded in
controlled ways (`data.corrupt`), at each level from none to severe.

    python -m cprfa_jax.studies.robustness --config configs/quickstart.py \
        --workdir runs/quickstart --out runs/robustness [--num 60] [--sizes 128,64,32]

For each set (synth-aflw, synth-cofw) and each corruption and level, the first --num images'
true DAFIs are corrupted (one generator per (corruption, level, image), so every method sees the
same inputs), decoded (§2.1, `cpr.decode`, on the device as in training), and fitted by PnP + DAFI(C), the online LM, CPR(C),
CPR-H and CPRFA; PnP-68 (the landmark network's points, which no DAFI corruption touches) is
the flat reference. The fused regressors get the landmark network's points on the clean image:
landmarks at a fixed noise, whatever the DAFI. The sixth axis, `resolution`, decodes the same
faces' true DAFIs rendered at --sizes px (normalised coordinates make them one input to every
method).

The regressors are the workdir's: for a fair study they are trained on the same corruptions
(`--config.cpr.dafi_source=corrupted_gt --config.cpr.corruption=study`); the output says what
they were trained on. Writes to --out: robustness.json ({"sets": {set: {corruption: {level:
{method: NME}}}}, NME = mean over the set's |yaw| bins, as Table 2), robustness_SET_KIND.png
(NME against level, one line per method), robustness_SET.png (every corruption of a set on one
y range, up to --max_nme) and robustness.md (one table per set and corruption).
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from cprfa_jax import cli, observe, workdirs
from cprfa_jax.data import corrupt, datasets
from cprfa_jax.evaluate import methods as evaluate_methods
from cprfa_jax.evaluate import table2
from cprfa_jax.geometry import projection
from cprfa_jax.nets import build
from cprfa_jax.report import curves, draw, markdown

SETS = ("synth-aflw", "synth-cofw")
# The regressors with their landmark branch, by their short labels (`evaluate.methods.METHODS`).
REGRESSORS = tuple((m.short, m.stage) for m in evaluate_methods.REGRESSORS if m.with_landmarks)
RESOLUTION = "resolution"


def trained_on(config, workdir) -> dict:
  """{regressor stage: what its DAFIs were} from each stage's recorded config."""
  out = {}
  for _, stage in REGRESSORS:
    lines = workdirs.history_rows(workdirs.stage_dir(workdir, stage))
    if not lines:
      continue
    cfg = next((l.get("config") for l in reversed(lines) if l.get("config")), None) or {}
    cpr = cfg.get("cpr", {})
    source = cpr.get("dafi_source", config.cpr.dafi_source)
    out[stage] = (source if source != "corrupted_gt"
                  else f"corrupted_gt ({cpr.get('corruption', 'mild')})")
  return out


def _fit_all(config, model3d, trained, sel, obs, hw, points, yaw):
  """{method: NME (mean of |yaw| bins, fraction)} on one set of observations."""
  fits = evaluate_methods.baselines(model3d, obs, sel["selected"], online_lm=config.eval.online_lm,
                            batch_size=config.eval.batch_size)
  for label, stage in REGRESSORS:
    if stage in trained:
      a, p, _ = evaluate_methods.run_regressor(config, model3d, stage, trained[stage], obs,
                                       sel["selected"], sel["layout"], True,
                                       config.eval.batch_size)
      fits[label] = (a, p, np.ones(len(a), bool))
  out = {}
  for k, v in fits.items():
    nme = evaluate_methods.method_results(model3d, obs, *v, hw, points)["nme"]
    out[k] = evaluate_methods.table_row(nme, yaw, config.eval.failure_nme)["nme_mean"] / 100.0
  return out


def _observations(dafi, mask, y_lm, truth, config, codes):
  obs = observe.decode_set_arrays(config.cpr.decode, codes, dafi, mask, config.eval.batch_size)
  obs["y_lm"], obs["det_lm"] = y_lm, np.ones(y_lm.shape[:2], bool)
  obs.update(truth)
  return obs


def run_set(config, model3d, name, num, trained, sel, lm_params, sizes, kinds, log):
  """{corruption: {level: {method: NME}}} of one set."""
  s = config.data.image_size
  hw = (s, s)
  src = datasets.ensure_set(model3d, name, config.data.data_dir, s, num, log=log)
  exs = [src[i] for i in range(num)]
  stack = lambda key, e=exs: np.stack([x[key] for x in e])
  truth = {"landmarks": stack("landmarks"), "yaw": stack("yaw")}
  # The landmark network on the clean images, once: the fused regressors' fixed-noise points.
  lm_px = np.concatenate([np.asarray(build.landmarks(config)(lm_params, stack("image")[i:i + 32])[0])
                          for i in range(0, num, 32)])
  y_lm = np.asarray(projection.from_pixels(lm_px, hw), np.float32)
  _, points, _ = table2.set_protocol(src, name)
  codes = observe.codes_of(model3d, config.cpr.match_dist)
  spacing = corrupt.pncc_spacing(model3d.pncc_Vx3)
  gt_dafi, gt_mask = stack("dafi").astype(np.float32), stack("mask").astype(bool)
  out = {}
  for ki, kind in enumerate(kinds):
    out[kind] = {}
    for li, level in enumerate(corrupt.LEVELS[kind]):
      t0 = time.time()
      pairs = [corrupt.corrupt(kind, gt_dafi[i], gt_mask[i], level,
                                   np.random.default_rng([config.seed, 12, ki, li, i]), spacing)
               for i in range(num)]
      d, m = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
      obs = _observations(d, m, y_lm, truth, config, codes)
      out[kind][f"{level:g}"] = _fit_all(config, model3d, trained, sel, obs, hw, points,
                                         truth["yaw"])
      log(f"{name}: {kind} {level:g}: " + ", ".join(
          f"{k} {100 * v:.2f}" for k, v in out[kind][f"{level:g}"].items())
          + f" ({time.time() - t0:.0f} s)")
  if sizes:
    out[RESOLUTION] = {}
    for size in sizes:
      t0 = time.time()
      other = datasets.ensure_set(model3d, name, config.data.data_dir, size, num, log=log)
      oex = [other[i] for i in range(num)]
      hw_o = (size, size)
      # Same seeds, same faces and framing: normalised coordinates agree across sizes.
      truth_o = {"landmarks": np.stack([x["landmarks"] for x in oex]), "yaw": truth["yaw"]}
      obs = _observations(np.stack([x["dafi"] for x in oex]).astype(np.float32),
                          np.stack([x["mask"] for x in oex]).astype(bool), y_lm, truth_o,
                          config, codes)
      out[RESOLUTION][str(size)] = _fit_all(config, model3d, trained, sel, obs, hw_o, points,
                                            truth["yaw"])
      log(f"{name}: {RESOLUTION} {size} px: " + ", ".join(
          f"{k} {100 * v:.2f}" for k, v in out[RESOLUTION][str(size)].items())
          + f" ({time.time() - t0:.0f} s)")
  return out


def table_md(name, kind, results) -> str:
  levels = list(results)
  methods = list(results[levels[0]])
  unit = corrupt.UNITS.get(kind, "image size (px)")
  grid = markdown.table(["method"] + levels,
                        [[m] + [f"{100 * results[l][m]:.2f}" for l in levels] for m in methods])
  return f"#### {name}: {kind} ({unit})\n\n{grid}\n"


def study(config, workdir, model3d, out_dir, num, sizes=(), kinds=tuple(corrupt.LEVELS),
          sets=SETS, log=print, max_nme: float = 0.3) -> dict:
  """Runs the study and writes its JSON, PNGs and markdown; returns the JSON's dict."""
  trained, steps = table2.trained_regressors(config, workdir)
  if not trained:
    raise FileNotFoundError(f"{workdir}: no trained regressor (cpr, cpr_h, capu); train them "
                            "first: python train.py --config ... --workdir " + workdir)
  sel = workdirs.read_selection(workdir)
  lm_params = workdirs.params_of(config, workdir, "landmarks")
  os.makedirs(out_dir, exist_ok=True)
  t0 = time.time()
  result = {"num_images": num, "levels": {k: list(corrupt.LEVELS[k]) for k in kinds},
            "units": {**{k: corrupt.UNITS[k] for k in kinds}, RESOLUTION: "image size (px)"},
            "trained_on": trained_on(config, workdir), "steps": steps,
            "image_size": config.data.image_size, "sets": {}}
  md = ["## Robustness to DAFI corruption", "",
        f"{num} images per set; NME (%) as Table 2 (mean over |yaw| bins). Regressors trained on: "
        + ", ".join(f"{k} {v}" for k, v in result["trained_on"].items()) + ".", ""]
  for name in sets:
    res = run_set(config, model3d, name, num, trained, sel, lm_params, sizes, kinds, log)
    result["sets"][name] = res
    panels = []
    for kind, by_level in res.items():
      md.append(table_md(name, kind, by_level))
      methods = list(next(iter(by_level.values())))
      series = {m: [by_level[l][m] for l in by_level] for m in methods}
      levels = [float(l) for l in by_level]
      img = curves.level_plot(series, levels, f"{name}: {kind}", result["units"][kind])
      draw.save_png(os.path.join(out_dir, f"robustness_{name}_{kind}.png"), img)
      # The overview: every corruption on one y range (values above max_nme drawn at the top),
      # so the panels compare at a glance.
      panels.append(curves.level_plot(series, levels, f"{name}: {kind}", result["units"][kind],
                                      max_nme=max_nme))
    rows = [draw.tile_columns(panels[i:i + 3], pad=0) for i in range(0, len(panels), 3)]
    draw.save_png(os.path.join(out_dir, f"robustness_{name}.png"), draw.tile_rows(rows, pad=0))
  result["seconds"] = round(time.time() - t0, 1)
  with open(os.path.join(out_dir, "robustness.json"), "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1, allow_nan=False)
  with open(os.path.join(out_dir, "robustness.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(md))
  return result


SCRIPT = "python -m cprfa_jax.studies.robustness"
FLAGS = flags.FLAGS


def define_flags():
  # Claimed only when run as a script: importing the module (tests, notebooks, other
  # scripts) must not claim --config, which several scripts define.
  config_flags.DEFINE_config_file("config", None, "The config the pipeline was trained with.")
  flags.DEFINE_string("workdir", None, "The trained pipeline (train.py --workdir).")
  flags.DEFINE_string("out", None, "Output folder.")
  flags.DEFINE_integer("num", 60, "Images per set.")
  flags.DEFINE_list("sizes", ["128", "64", "32"], "Image sizes of the resolution axis "
                    "(px, none to severe; empty: skip it).")
  flags.DEFINE_list("corruptions", list(corrupt.LEVELS), "Corruptions to sweep.")
  flags.DEFINE_list("sets", list(SETS), "Synthetic sets with true DAFIs.")
  flags.DEFINE_float("max_nme", 0.3, "Top of the overview figures' y axis (NME as a "
                     "fraction; larger values are drawn at the top).")


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)
  for name in ("workdir", "out"):
    if not FLAGS[name].value:
      cli.fail(SCRIPT, f"--{name} is required (see {SCRIPT} --help)")
  if FLAGS.config is None:
    cli.fail(SCRIPT, f"--config is required (see {SCRIPT} --help)")
  bad = [k for k in FLAGS.corruptions if k not in corrupt.LEVELS]
  if bad:
    cli.fail(SCRIPT, f"--corruptions: unknown {', '.join(bad)}; use any of "
             f"{', '.join(corrupt.LEVELS)}")
  bad = [n for n in FLAGS.sets if n not in SETS]
  if bad:
    cli.fail(SCRIPT, f"--sets: {', '.join(bad)} has no true DAFIs; use any of {', '.join(SETS)}")
  try:
    sizes = [int(v) for v in FLAGS.sizes]
  except ValueError:
    cli.fail(SCRIPT, f"--sizes={','.join(FLAGS.sizes)}: give image sizes in px, e.g. 128,64,32")
  if any(not 32 <= v <= 512 for v in sizes):
    cli.fail(SCRIPT, f"--sizes={','.join(FLAGS.sizes)}: the renderer supports 32 to 512 px")
  config = FLAGS.config
  model3d = cli.load_model(config)
  try:
    res = study(config, FLAGS.workdir, model3d, FLAGS.out, FLAGS.num, sizes,
                tuple(FLAGS.corruptions), tuple(FLAGS.sets),
                log=lambda s: print(s, file=sys.stderr, flush=True), max_nme=FLAGS.max_nme)
  except FileNotFoundError as e:
    cli.fail(SCRIPT, cli.one_line(str(e)))
  print(f"{len(res['sets'])} sets x {sum(len(v) for v in res['levels'].values())} corruption "
        f"levels{' + ' + str(len(sizes)) + ' sizes' if sizes else ''}, {FLAGS.num} images each, "
        f"in {res['seconds']:.0f} s -> {FLAGS.out}/robustness.json, robustness.md, "
        "robustness_*.png")


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=cli.flags_parser(SCRIPT, __doc__))
