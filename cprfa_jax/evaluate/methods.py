"""Evaluating the fit (§3.4-3.5): every method of the ablation on the same observations, the
paper's Table 2 layout, per-image results with a confidence and a failure flag.

Methods (landmark NME of the fitted model's projected landmarks against the ground truth):
  PnP-68          OpenCV solvePnP of the mean shape's landmarks on the landmark network's points
  PnP + DAFI(C)   solvePnP of the mean shape on the detected selected vertices (NME = 1 when
                  fewer than 4 are detected: §3.4 sets 1 "if DAFI detects no vertex")
  Online LM       robust Levenberg-Marquardt over pose and shape on all detected vertices (Fig. 1a)
  CPR(C)          the DAFI CPR regressor, round 1
  CPR-H           + the 68-landmark CPR (fusion)
  CPRFA           CPR-H + CAPU (round 2)
  CPRFA, no lmk   the same network run without landmarks (fusion "with and without")

Confidence: the fitted model's final reprojection error over every DAFI-detected vertex, in units
of the fitted face's landmark box (what a user can see at test time, without ground truth); an
image is flagged as a likely failure when it exceeds `eval.failure_nme` or fewer than 10% of
the selected vertices were detected.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from cprfa_jax import metrics, observe
from cprfa_jax.baselines import fitting, online_lm_jax
from cprfa_jax.batching import padded_batches
from cprfa_jax.geometry import projection
from cprfa_jax.mm.model import join_alpha, vertices
from cprfa_jax.report import markdown
from cprfa_jax.nets import build

INNER_51 = np.arange(17, 68)


@dataclasses.dataclass(frozen=True)
class Method:
  """One fitting method of Table 2 and the studies: `label` in Table 2, `short` in the studies'
  tables and figures, the regressor `stage` (None: a baseline), whether its landmark branch gets
  the landmark network's points, and the trained stages its fit rests on (an unfinished one marks
  its rows)."""
  label: str
  short: str
  stage: str | None
  with_landmarks: bool
  rests_on: tuple[str, ...]


# The one registry of methods (module docstring); evaluate.table2 and studies.robustness read it.
METHODS = (
    Method("PnP-68", "PnP-68", None, True, ("landmarks",)),
    Method("PnP + DAFI(C)", "PnP + DAFI(C)", None, False, ("dafi",)),
    Method("Online LM", "Online LM", None, False, ("dafi",)),
    Method("CPR(C)", "CPR(C)", "cpr", True, ("dafi", "cpr")),
    Method("CPR-H", "CPR-H", "cpr_h", True, ("dafi", "landmarks", "cpr_h")),
    Method("CPRFA (CPR-H + CAPU)", "CPRFA", "capu", True, ("dafi", "landmarks", "cpr_h", "capu")),
    Method("CPRFA, no landmarks", "CPRFA, no landmarks", "capu", False, ("dafi", "cpr_h", "capu")),
)
BASELINES = tuple(m for m in METHODS if m.stage is None)
FINAL = next(m for m in METHODS if m.stage == "capu" and m.with_landmarks)   # the paper's CPRFA
REGRESSORS = tuple(m for m in METHODS if m.stage is not None)     # COFW's 51 inner landmarks (Ghiasi et al.), as in §3.1


GT_KEYS = ("landmarks", "yaw", "pose", "points", "points_valid", "box_points", "occluded")


def observe_set(observer, source, num: int, batch_size: int, keep_pictures: int = 8) -> dict:
  """Runs the U-Net, decoding and landmark network over the first `num` examples. Returns a
  dict of (N, ...) NumPy arrays: y_all, det_all, y_lm (normalised), lm_px, the first images /
  predicted DAFIs for pictures, and the ground truth the set has: landmarks (pixels), yaw,
  alpha, pose (the synthetic and AFLW2000-3D sets); points, points_valid, box_points, occluded
  (the benchmark sets, `data.aflw` / `data.cofw`)."""
  out = {k: [] for k in ("y_all", "det_all", "y_lm", "lm_px")}
  pics = {"image": [], "dafi": []}
  for lo in range(0, num, batch_size):
    exs = [source[i] for i in range(lo, min(lo + batch_size, num))]
    batch = {k: np.stack([e[k] for e in exs]) for k in exs[0]}
    obs, d, m, lm = observer.observe(batch["image"])
    for k in ("y_all", "det_all", "y_lm"):
      out[k].append(obs[k])
    out["lm_px"].append(lm)
    for k in GT_KEYS:
      if k in batch:
        out.setdefault(k, []).append(batch[k])
    if "alpha_id" in batch:
      out.setdefault("alpha", []).append(join_alpha(batch["alpha_id"], batch["alpha_exp"]))
    take = max(0, keep_pictures - sum(len(x) for x in pics["image"]))
    pics["image"].append(batch["image"][:take])
    pics["dafi"].append(d[:take] * m[:take, ..., None])
  res = {k: np.concatenate(v) for k, v in out.items()}
  res.update({k: np.concatenate(v) for k, v in pics.items()})
  return res


def landmarks_px(model3d, alpha_NxA, pose_Nx6, hw) -> np.ndarray:
  """Projected 68 landmarks (N, 68, 2) in pixels of fitted models."""
  return np.asarray(_landmarks_px(model3d, jnp.asarray(alpha_NxA, jnp.float32),
                                  jnp.asarray(pose_Nx6, jnp.float32), hw))


@functools.partial(jax.jit, static_argnames=("hw",))
def _landmarks_px(model3d, alpha, pose, hw):
  def one(a, p):
    v = vertices(model3d, a)[model3d.landmarks_68]
    return projection.to_pixels(projection.project(v, p), hw)

  return jax.vmap(one)(alpha, pose)


ONLINE_LM = ("host", "jax")


def _online_lm_jax(model3d, obs, num_id, num_exp, batch_size):
  """`online_lm_jax.online_fit_batch` in batches of batch_size, the last one padded with its
  last face (one compilation for the set): lists of pose / alpha (None where it could not fit)."""
  poses, alphas = [], []
  for lo, hi, idx in padded_batches(len(obs["y_all"]), batch_size):
    p, a = online_lm_jax.online_fit_batch(model3d, obs["y_all"][idx], obs["det_all"][idx],
                                          num_id, num_exp)
    poses += p[:hi - lo]
    alphas += a[:hi - lo]
  return poses, alphas


def baselines(model3d, obs, sel_C, num_id=10, num_exp=5, log=lambda s: None, online_lm="host",
              batch_size=32) -> dict:
  """PnP-68, PnP + DAFI(C), online LM: {name: (alpha (N, A), pose (N, 6), ok (N,))}.
  `log(name)` as each method starts. online_lm: "host" fits each face with scipy
  (`fitting.online_fit`), "jax" batch_size faces at once on the device (`online_lm_jax`: the same
  fit, ~10x faster on the CPU; `--config.eval.online_lm`)."""
  if online_lm not in ONLINE_LM:
    raise ValueError(f"--config.eval.online_lm={online_lm!r}: use one of {', '.join(ONLINE_LM)}")
  n, a = len(obs["y_all"]), model3d.num_id + model3d.num_exp
  mean = np.asarray(model3d.mean_Vx3)
  lm3d = mean[np.asarray(model3d.landmarks_68)]
  out = {}
  for name in (b.label for b in BASELINES):
    log(name)
    alpha, pose, ok = np.zeros((n, a)), np.tile([0, 0, 0, 1.0, 0, 0], (n, 1)), np.zeros(n, bool)
    if name == "Online LM" and online_lm == "jax":
      batched = _online_lm_jax(model3d, obs, num_id, num_exp, batch_size)
    for i in range(n):
      if name == "PnP-68":
        p, al = fitting.pnp_pose(lm3d, obs["y_lm"][i]), None
      elif name == "PnP + DAFI(C)":
        det = obs["det_all"][i, sel_C]
        p, al = fitting.pnp_pose(mean[sel_C][det], obs["y_all"][i, sel_C][det]), None
      elif online_lm == "jax":
        p, al = batched[0][i], batched[1][i]
      else:
        p, al = fitting.online_fit(model3d, obs["y_all"][i], obs["det_all"][i], num_id, num_exp)
      if p is not None and np.all(np.isfinite(p)):
        pose[i], ok[i] = p, True
        if al is not None:
          alpha[i] = al
    out[name] = (alpha.astype(np.float32), pose.astype(np.float32), ok)
  return out


def run_regressor(config, model3d, stage, params, obs, sel_C, layout_3xN, with_landmarks=True,
                  batch_size=32):
  """A trained regressor over a set: (alpha (N, A), pose (N, 6), outputs of the first batch).
  The last batch is padded to full size so one compilation serves every batch."""
  apply = build.regressor(config, model3d, stage)
  sel, layout = jnp.asarray(sel_C), jnp.asarray(layout_3xN)
  keys = build.inference_keys(config.seed, batch_size)
  alphas, poses, first = [], [], None
  for lo, hi, idx in padded_batches(len(obs["y_all"]), batch_size):
    batch = {k: obs[k][idx] for k in ("y_all", "det_all")}
    if with_landmarks and build.VARIANTS[stage]["fusion"]:
      batch["y_lm"] = obs["y_lm"][idx]
      batch["det_lm"] = np.ones(batch["y_lm"].shape[:2], bool)
    out = apply(params, model3d, sel, layout, observe.to_observations(batch, sel_C), keys)
    alphas.append(np.asarray(out["alpha"])[:hi - lo])
    poses.append(np.asarray(out["pose"])[:hi - lo])
    if first is None:
      first = jax.device_get(out)
  return np.concatenate(alphas), np.concatenate(poses), first


def protocol_scores(protocol, pred_Nx68x2, obs, points=None) -> dict:
  """Per-image NMEs of 68 predicted points under a set's protocol: {"nme": the table's NME
  (box normaliser), "nme_interocular": COFW-68's own (cofw68 only)}, and "gt_px", the ground
  truth to draw (NaN where not annotated).

  protocol None: the 68 `landmarks` (or `points`, e.g. COFW's 51 inner ones) over the 68
  landmarks' box (AFLW2000-3D, the synthetic sets); "aflw21": AFLW's 21 points from the 68
  (`metrics.aflw21_nme`); "cofw68": the 51 inner points, occluded ones included."""
  if protocol == "aflw21":
    return {"nme": np.asarray(metrics.aflw21_nme(pred_Nx68x2, obs["points"], obs["points_valid"],
                                                 obs["box_points"])),
            "gt_px": np.where(obs["points_valid"][..., None], obs["points"], np.nan)}
  if protocol == "cofw68":
    return {"nme": np.asarray(metrics.cofw68_nme(pred_Nx68x2, obs["points"], obs["occluded"])),
            "nme_interocular": np.asarray(metrics.cofw68_nme(
                pred_Nx68x2, obs["points"], obs["occluded"], normaliser="interocular")),
            "gt_px": obs["points"]}
  if protocol is not None:
    raise ValueError(f"unknown protocol {protocol!r}; known: {metrics.PROTOCOLS}")
  gt = obs["landmarks"]
  vis = None if points is None else np.isin(np.arange(68), points)[None].repeat(len(gt), 0)
  return {"nme": np.asarray(metrics.nme(pred_Nx68x2, gt, vis, gt)), "gt_px": gt}


def method_results(model3d, obs, alpha, pose, ok, hw, points=None, protocol=None) -> dict:
  """Per-image NME (NME 1 where the method failed to produce a fit; every normaliser of the
  set's protocol, `protocol_scores`), confidence, fitted landmarks."""
  pred = landmarks_px(model3d, alpha, pose, hw)
  scores = protocol_scores(protocol, pred, obs, points)
  out = {k: np.where(ok & np.isfinite(v), v, 1.0) for k, v in scores.items() if k.startswith("nme")}
  conf = np.asarray(metrics.reprojection_confidence(model3d, jnp.asarray(alpha), jnp.asarray(pose),
                                            jnp.asarray(obs["y_all"]), jnp.asarray(obs["det_all"])))
  return {**out, "confidence": conf, "landmarks_px": pred, "gt_px": scores["gt_px"]}


def table_row(nme, yaw, failure_nme) -> dict:
  """Table 2 row: NME (%) per |yaw| bin, mean and std of the bin means (ddof 0, `metrics`),
  failure (%), AUC. A set without images in a bin (synth-cofw has no |yaw| > 60°) gets NaN
  there and the mean / std of the bins it has. A set without yaw (COFW) has no bins: its mean
  is the mean over images and it has no std."""
  pct = lambda x: [round(100 * float(v), 2) for v in np.atleast_1d(x)]
  common = {"failure": round(100 * float(metrics.failure_rate(nme, nme_threshold=failure_nme)), 2),
            "auc": round(float(metrics.auc(nme, failure_nme)), 4)}
  if yaw is None:
    mean = pct(np.mean(nme))[0]
    return {"nme_bins": [None] * 3, "nme_mean": mean, "nme_std": None, "nme_overall": mean,
            "bin_count": None, "mean_is": "mean over images (no yaw)", **common}
  s = metrics.binned_summary(nme, yaw)
  present = s["bin_mean"][s["bin_count"] > 0]
  return {"nme_bins": pct(s["bin_mean"]), "nme_mean": pct(present.mean())[0],
          "nme_std": pct(present.std())[0], "nme_overall": pct(s["overall_mean"])[0],
          "bin_count": [int(c) for c in s["bin_count"]], **common}


def fmt(value, spec: str = ".2f") -> str:
  """A table cell: "–" for no value (None or NaN: an empty |yaw| bin, nothing detected)."""
  return "–" if value is None or not np.isfinite(value) else format(value, spec)


def table2_md(title, rows, num_points, labels=None, note=None) -> str:
  """The markdown table; `labels`: {method: row label} where it differs from the name; `note`
  replaces the caption's first sentence (what is scored, over what)."""
  cells = [[(labels or {}).get(name, name)] + [fmt(v) for v in r["nme_bins"]]
           + [fmt(r["nme_mean"]), fmt(r["nme_std"]), f"{r['failure']:.2f}", f"{r['auc']:.3f}"]
           for name, r in rows.items()]
  grid = markdown.table(["Method", "[0°, 30°]", "(30°, 60°]", "(60°, 90°]", "Mean", "Std", "Failure", "AUC"], cells)
  note = note or f"NME (%) of the {num_points} landmarks, as the paper's Table 2"
  return f"### {title}\n\n{grid}\n\n{note}; failure: NME > 10%; AUC of the CED up to 10%.\n"
