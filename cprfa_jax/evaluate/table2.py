"""evaluate.py's fit section: Table 2 per test set for every method, the ablation, CED curves
(Fig. 5), the fitted grid (Fig. 6), the CPR inputs of every stage of both rounds (Fig. 3), and
per-image results. Files go to the workdir; returns the report dict and its markdown."""

from __future__ import annotations

import csv
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from cprfa_jax import metrics, observe, workdirs
from cprfa_jax.data import aflw
from cprfa_jax.evaluate import methods, sets, stage_status
from cprfa_jax.nets import build
from cprfa_jax.geometry import projection
from cprfa_jax.mm.model import vertices
from cprfa_jax.report import draw, figures, published

REST_ON = {m.label: m.rests_on for m in methods.METHODS}
# Fig. 3: what each pose group reads (Eq. 4); α reads Λ_rxy too, before [r_x, r_y] moves.
CPR_INPUTS = (("rxy", "Λ_rxy^G − Λ_rxy^O"), ("rz", "Λ_rz^G − Λ_rz^O"), ("s", "Λ_s^G / Λ_s^O − 1"))


def _mesh_px(model3d, alpha, pose, hw):
  verts = vertices(model3d, alpha)
  px = projection.to_pixels(projection.project(verts, jnp.asarray(pose)), hw)
  depth = projection.camera_points(verts, jnp.asarray(pose))[:, 2] * min(hw) / 2
  facing = projection.front_facing(verts, model3d.triangles_Tx3, jnp.asarray(pose))
  return np.concatenate([np.asarray(px), np.asarray(depth)[:, None]], 1), np.asarray(facing)


NOTES = {
    "aflw21": "NME (%) of AFLW's annotated points among its 21, made from the fitted 68 "
              "(3DDFA's groups), over sqrt(w·h) of the 68-point box (3DDFA's AFLW protocol)",
    "cofw68": "NME (%) of the 51 inner points (iBUG 18–68, occluded ones included), over "
              "sqrt(w·h) of the 68 ground-truth points' box (bounding-box normaliser, as 3DDFA "
              "and the paper); no yaw: Mean is the mean over images",
    "cofw68_io": "NME (%) of the 51 inner points (occluded ones included), over the "
                 "inter-ocular distance (mean of iBUG 37–42 to mean of 43–48: COFW-68's own "
                 "script); no yaw: Mean is the mean over images",
    "reannotated": "NME (%) of the 68 landmarks against 3DDFA's re-annotated AFLW2000-3D "
                   "landmarks (AFLW2000-3D-Reannotated.pts68.npy), over their box",
}


def set_protocol(source, name):
  """(scoring protocol for `methods.protocol_scores`, points, number of scored points): from
  the set's metadata (`data.aflw`, `data.cofw`); the synthetic sets by name (synth-cofw: the
  51 inner points)."""
  protocol = (getattr(source, "metadata", None) or {}).get("protocol")
  if protocol == "aflw21":
    return protocol, None, 21
  if protocol == "cofw68":
    return protocol, None, 51
  if protocol is not None:
    raise ValueError(f"{name}: unknown protocol {protocol!r} in its metadata; known: "
                     f"{metrics.PROTOCOLS}")
  return (None, methods.INNER_51, 51) if "cofw" in name else (None, None, 68)


def evaluate_set(config, model3d, name, source, observer, trained, sel, workdir, log=print,
                 statuses=None, reannotated=None):
  """trained: {stage: params} of the regressor stages present (capu: round 2 merged in);
  statuses: {stage: `stage_status.status`}, to mark the rows of unfinished stages. `log` gets a
  line as each step starts. reannotated: optional (N, 68, 2) other ground truth of the same
  images (3DDFA's re-annotated AFLW2000-3D, `data.aflw.reannotated_points`), scored in an
  extra table."""
  num = min(config.data.num_eval or len(source), len(source))
  hw = (config.data.image_size,) * 2
  log(f"{name}: U-Net, DAFI decoding and landmark network on {num} images ...")
  obs = methods.observe_set(observer, source, num, config.eval.batch_size)
  protocol, points, npts = set_protocol(source, name)
  yaw = obs.get("yaw")
  sel_c = sel["selected"]
  fits = methods.baselines(model3d, obs, sel_c, log=lambda m: log(f"{name}: {m} ..."),
                            online_lm=config.eval.online_lm, batch_size=config.eval.batch_size)
  firsts = {}
  for method in methods.REGRESSORS:
    label, stage, with_lm = method.label, method.stage, method.with_landmarks
    if stage in trained:
      log(f"{name}: {label} ...")
      a, p, first = methods.run_regressor(config, model3d, stage, trained[stage], obs, sel_c,
                                           sel["layout"], with_lm, config.eval.batch_size)
      fits[label] = (a, p, np.ones(num, bool))
      firsts[label] = first
  log(f"{name}: scores, figures and per-image results ...")
  results = {k: methods.method_results(model3d, obs, *v, hw, points, protocol)
             for k, v in fits.items()}
  labels, marks = {}, {}
  for k in results:
    suffix, marks[k] = stage_status.mark(REST_ON.get(k, ()), statuses or {})
    labels[k] = k + suffix

  def table(key, gt_yaw=yaw):
    rows = {k: methods.table_row(r[key], gt_yaw, config.eval.failure_nme) for k, r in results.items()}
    for k, row in rows.items():
      row.update(marks[k])
    return rows

  rows = table("nme")
  tag = name.replace(":", "_")
  md = [methods.table2_md(f"{name} ({num} images)", rows, npts, labels, NOTES.get(protocol))]
  best = methods.FINAL.label if methods.FINAL.label in results else list(results)[-1]
  report = {"num_images": num, "num_points": npts, "protocol": protocol or "68 landmarks",
            "normaliser": "box", "methods": rows}
  if protocol == "cofw68":
    report["methods_interocular"] = table("nme_interocular")
    md.append(methods.table2_md(f"{name} ({num} images), inter-ocular normaliser",
                                 report["methods_interocular"], npts, labels, NOTES["cofw68_io"]))
  if reannotated is not None:
    gt_re = np.asarray(reannotated[:num])
    for k, v in results.items():
      nme_re = np.asarray(metrics.nme(v["landmarks_px"], gt_re, None, gt_re))
      v["nme_reannotated"] = np.where(fits[k][2] & np.isfinite(nme_re), nme_re, 1.0)
    report["methods_reannotated"] = table("nme_reannotated")
    md.append(methods.table2_md(f"{name} ({num} images), 3DDFA's re-annotated landmarks",
                                 report["methods_reannotated"], 68, labels, NOTES["reannotated"]))
  pub = published.protocol_of(getattr(source, "metadata", None))
  if pub:
    report["published"] = published.rows(pub)
    md.append(published.table_md(pub))

  # Confidence: how well the test-time flag predicts real failures of the final method.
  r = results[best]
  flag = metrics.failure_flag(r["confidence"], obs["det_all"][:, sel_c].mean(1),
                              config.eval.failure_nme)
  fail = r["nme"] > config.eval.failure_nme
  report["flag"] = {"method": best, "flagged": int(flag.sum()), "failures": int(fail.sum()),
                    "failures_flagged": int((flag & fail).sum())}
  md.append(f"Failure flag ({best}): {int(flag.sum())} images flagged, {int(fail.sum())} real "
            f"failures, {int((flag & fail).sum())} of them flagged.\n")
  extra = [c for c in ("nme_interocular", "nme_reannotated") if c in r]
  with open(os.path.join(workdir, f"per_image_{tag}.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["index", "yaw", "detected_selected"] + [f"nme[{k}]" for k in results] +
               [f"{c}[{k}]" for c in extra for k in results] + ["confidence", "flagged_failure"])
    for i in range(num):
      w.writerow([i, "" if yaw is None else f"{yaw[i]:.1f}", int(obs["det_all"][i, sel_c].sum())] +
                 [f"{results[k]['nme'][i]:.5f}" for k in results] +
                 [f"{results[k][c][i]:.5f}" for c in extra for k in results] +
                 [f"{r['confidence'][i]:.5f}", int(flag[i])])

  # Fig. 5: CED curves.
  draw.save_png(os.path.join(workdir, f"ced_{tag}.png"),
       figures.ced_plot({k + (" (unfinished)" if labels[k] != k else ""): v["nme"]
                         for k, v in results.items()},
                        f"CED, {name} ({npts} pts)", config.eval.failure_nme))
  # Fig. 6: DAFI / fitted landmarks + selected vertices / mesh, for the final method.
  k = len(obs["image"])
  a, p, _ = fits[best]
  meshes = [_mesh_px(model3d, a[i], p[i], hw) for i in range(k)]
  tri = np.asarray(model3d.triangles_Tx3)
  sel_px = np.stack([m[sel_c, :2] for m, _ in meshes])     # the mesh's own selected vertices
  grid = figures.fit_grid(
      obs["image"], obs["dafi"], np.stack([m for m, _ in meshes]), tri,
      np.stack([figures.triangles_facing(f, tri) for _, f in meshes]),
      r["landmarks_px"][:k], r["gt_px"][:k], sel_px, obs["det_all"][:k, sel_c], scale=3,
      titles=[f"NME {100 * r['nme'][i]:.1f}%" for i in range(k)],
      row_labels=("DAFI", "points", "mesh"), legend=f"{labels[best]} on {name}")
  draw.save_png(os.path.join(workdir, f"fits_{tag}.png"), grid)
  # Fig. 3: every Eq. 4 input of the pose groups at every stage of both rounds, first image.
  if best in firsts:
    rows3 = []
    for rnd in ("round1", "round2"):
      seen = firsts[best].get(rnd, {}).get("seen", {})
      for q in range(config.cpr.num_stages if seen else 0):
        rows3.append((f"round {rnd[-1]}, q = {q + 1}",
                      {text: np.asarray(seen[g][q, 0]) for g, text in CPR_INPUTS if g in seen}))
    if rows3:
      draw.save_png(os.path.join(workdir, f"cpr_channels_{tag}.png"), figures.cpr_stages(
          rows3, f"{labels[best]}: CPR inputs, {name} image 0 (NME {100 * r['nme'][0]:.1f}%)"))
  return report, "\n".join(md)


def trained_regressors(config, root, config_file="CONFIG") -> tuple[dict, dict]:
  """({stage: params}, {stage: step}) for the regressor stages trained in `root`
  (`workdirs.regressor_params`: capu's include CPR-H's round 1, restored once), as host
  arrays."""
  out, steps = {}, {}
  for stage in workdirs.REGRESSOR_STAGES:      # cpr_h before capu: its round 1 is reused
    if workdirs.is_trained(root, stage):
      params, s = workdirs.regressor_params(config, root, stage, config_file, out.get("cpr_h"))
      out[stage] = jax.device_get(params)
      steps.update(s)
  return out, steps


def evaluate(config, root, model3d, trained, sel, statuses, log):
  """evaluate.py's Table 2 and the ablation on every eval set; (report dict, markdown lines) or
  (None, []) when no regressor is trained. `sel`: the workdir's vertex selection."""
  if not trained:
    return None, []
  t0 = time.time()
  observer = observe.Observer(config, root, model3d, with_landmarks=True)
  kappa = build.kappa_sample_line(config, model3d)
  report = {"stages": sorted(trained), "kappa_sample": kappa, "sets": {}}
  md = ["## Table 2: 3D face alignment (landmark NME)\n", f"Regressors: {kappa}.\n"]
  re_path = config.eval.get("aflw2000_reannotated", None)
  for set_name in config.data.eval_sets:
    src = sets.eval_source(config, model3d, set_name, log)
    num = min(config.data.num_eval or len(src), len(src))
    re68 = None
    if re_path and (getattr(src, "metadata", None) or {}).get("source") == "aflw2000":
      log(f"{set_name}: mapping 3DDFA's re-annotated landmarks {re_path} onto its images ...")
      re68 = aflw.reannotated_points(src, re_path, num)
    r, m = evaluate_set(config, model3d, set_name, src, observer, trained, sel, root, log=log,
                        statuses=statuses, reannotated=re68)
    report["sets"][set_name] = r
    md.append(m)
  report["seconds"] = round(time.time() - t0, 1)
  return report, md
