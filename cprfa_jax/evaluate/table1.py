"""Evaluating the HS-U-Net stage: Table 1 of the paper, from `observe.decode_set`'s decoded sets.

For every test image the predicted DAFI (full resolution, pixels where the predicted mask is
> 0.5) is decoded into vertex positions as §2.1 does (the pixel mean, on the device:
`observe.observe_images`); a vertex is detected if some pixel matches it within
`eval.match_dist`. Per image and vertex subset (the 68 landmark
vertices, all vertices, the C selected ones) we report the NME of the detected vertices
against their ground-truth projections (normalised by the ground-truth landmark box, as for
landmarks) and the detection rate; Table 1 bins them by |yaw| and counts a failure when the NME
is > 10% or the detection rate < 10%.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np

from cprfa_jax import metrics, observe
from cprfa_jax.evaluate import methods, sets, stage_status
from cprfa_jax.nets import build, initialise
from cprfa_jax.report import draw, markdown, published


def _bins_summary(summary) -> tuple[float, float]:
  """Mean and std (ddof 0) of the bin means that exist: an empty |yaw| bin (synth-cofw has no
  |yaw| > 60°) or one with no detected vertex at all has no value, as in Table 2. NaN when no
  bin has one (report.json writes it as null)."""
  present = summary["bin_mean"][np.isfinite(summary["bin_mean"])]
  if present.size == 0:
    return float("nan"), float("nan")
  return float(present.mean()), float(present.std())


def subset_table(decoded, subset_idx) -> dict:
  """Table 1 row for one vertex subset: per-bin NME and ADR (in %), mean, std, failure."""
  det = decoded["detected"][:, subset_idx]
  nme = np.asarray(metrics.vertex_nme(decoded["pred"][:, subset_idx], decoded["gt"][:, subset_idx],
                                      det, decoded["landmarks"]))
  rate = np.asarray(metrics.detection_rate(det))
  nme_s = metrics.binned_summary(nme, decoded["yaw"], nan_policy="omit")
  adr_s = metrics.binned_summary(rate, decoded["yaw"])
  pct = lambda x: [round(100 * float(v), 2) for v in np.atleast_1d(x)]
  (nme_mean, nme_std), (adr_mean, adr_std) = _bins_summary(nme_s), _bins_summary(adr_s)
  return {
      "num_vertices": int(len(subset_idx)),
      "nme_bins": pct(nme_s["bin_mean"]), "nme_mean": pct(nme_mean)[0],
      "nme_std": pct(nme_std)[0],
      "adr_bins": pct(adr_s["bin_mean"]), "adr_mean": pct(adr_mean)[0],
      "adr_std": pct(adr_std)[0],
      "failure": round(100 * float(metrics.failure_rate(np.nan_to_num(nme, nan=1.0), rate)), 2),
      "images_without_detection": int(nme_s["num_omitted"]),
      "bin_count": [int(c) for c in adr_s["bin_count"]],
  }


def landmark_table(decoded) -> dict:
  """Table 1's FAN-3D row for our landmark network: its 68 points against the ground-truth
  landmarks, NME per |yaw| bin as the DAFI rows; ADR is 100% by construction (a heatmap
  network places every landmark), failure: NME > 10%."""
  nme = np.asarray(metrics.nme(decoded["lm_pred"], decoded["landmarks"]))
  nme_s = metrics.binned_summary(nme, decoded["yaw"], nan_policy="omit")
  counts = nme_s["bin_count"]
  pct = lambda x: [round(100 * float(v), 2) for v in np.atleast_1d(x)]
  nme_mean, nme_std = _bins_summary(nme_s)
  adr = [100.0 if c else float("nan") for c in counts]
  return {
      "num_vertices": 68, "nme_bins": pct(nme_s["bin_mean"]), "nme_mean": pct(nme_mean)[0],
      "nme_std": pct(nme_std)[0], "adr_bins": adr, "adr_mean": 100.0, "adr_std": 0.0,
      "failure": round(100 * float(metrics.failure_rate(np.nan_to_num(nme, nan=1.0))), 2),
      "images_without_detection": 0, "bin_count": [int(c) for c in counts],
  }


def picture(pictures) -> np.ndarray:
  """Rows of input | true DAFI | predicted DAFI | predicted mask, uint8 RGB."""
  rows = []
  for img, true_dafi, pred_dafi, pmask in pictures:
    to8 = lambda x: (np.clip(x, 0, 1) * 255).astype(np.uint8)
    rows.append(np.concatenate([img, to8(true_dafi), to8(pred_dafi),
                                np.repeat(to8(pmask)[..., None], 3, -1)], 1))
  return np.concatenate(rows, 0)


def table_md(title, rows, mark="", marks=None) -> str:
  """Table 1's markdown: `mark`, the suffix of rows resting on the U-Net; `marks`: {label:
  suffix} for others."""
  pair = lambda n, a: f"{methods.fmt(n)}/{methods.fmt(a, '.1f')}"
  cells = [[f"{label} ({r['num_vertices']}){(marks or {}).get(label, mark)}"]
           + [pair(n, a) for n, a in zip(r["nme_bins"], r["adr_bins"])]
           + [pair(r["nme_mean"], r["adr_mean"]), pair(r["nme_std"], r["adr_std"]),
              f"{r['failure']:.2f}"] for label, r in rows]
  grid = markdown.table(["Method (num. of vert.)", "[0°, 30°]", "(30°, 60°]", "(60°, 90°]", "Mean", "Std",
                         "Failure"], cells)
  return f"### {title}\n\n{grid}" + ("\n\nNME (%) / ADR (%) of DAFI vertex detection, as the paper's "
                             "Table 1; the landmark network's row is its FAN-3D row (68 points, "
                             "ADR 100% by construction).\n")


def evaluate(config, root, model3d, params, sel, statuses, compare_untrained, log,
             lm_params=None):
  """evaluate.py's Table 1 on every eval set; returns (report dict, markdown lines). `sel`: the
  workdir's vertex selection (`train.selection`). With the landmark network's parameters, its 68
  points are Table 1's FAN-3D row. Benchmark sets (no 3DMM ground truth) are skipped."""
  runs = [("trained", params)]
  if compare_untrained:
    first = sets.eval_source(config, model3d, config.data.eval_sets[0], log)[0]
    # The training loop's initialisation (the same seed, compiled as it compiles it).
    init = initialise.init_jitted(
        lambda rng, x: build.unet_network(config).init(rng, x)["params"],
        jax.random.PRNGKey(config.seed), build.preprocess(first["image"][None]))
    runs.append(("untrained", init))
  t0 = time.time()
  step = statuses["dafi"]["step"]
  report = {"step": step, "model": model3d.name,
            "num_vertices": model3d.num_vertices, "selection": {
                "C": int(config.cpr.num_selected), "reference_images": config.data.num_reference,
                "mean_p1_selected": float(sel["p1"][sel["selected"]].mean()),
                "mean_p2_selected": float(sel["p2"][sel["selected"]].mean())}, "sets": {}}
  mark, fields = stage_status.mark(("dafi",), statuses)
  md = [f"## Table 1: DAFI vertex detection (U-Net step {step}, model {model3d.name}, "
        f"V = {model3d.num_vertices})\n"]
  subsets = {"DAFI": np.asarray(model3d.landmarks_68), "DAFI all": np.arange(model3d.num_vertices),
             "DAFI CPR": sel["selected"]}
  lm_mark, lm_fields = stage_status.mark(("landmarks",), statuses)
  for set_name in config.data.eval_sets:
    src = sets.eval_source(config, model3d, set_name, log)
    if sets.is_benchmark(src):
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
                               lm_params if label == "trained" else None)
      rows = [(name, subset_table(dec, idx)) for name, idx in subsets.items()]
      if label == "trained":
        for _, r in rows:
          r.update(fields)
        if "lm_pred" in dec:
          rows.insert(0, ("Landmark network", {**landmark_table(dec), **lm_fields}))
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
        draw.save_png(png, picture(dec["pictures"]))
  report["seconds"] = round(time.time() - t0, 1)
  return report, md
