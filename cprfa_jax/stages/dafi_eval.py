"""Evaluating the HS-U-Net stage: Table 1 of the paper, and the CPR vertex selection (§2.2).

For every test image the predicted DAFI (full resolution, pixels where the predicted mask is
> 0.5) is decoded into vertex positions with the KD-tree of §2.1; a vertex is detected if some
pixel matches it within `eval.match_dist`. Per image and vertex subset (the 68 landmark
vertices, all vertices, the C selected ones) we report the NME of the detected vertices
against their ground-truth projections (normalised by the ground-truth landmark box, as for
landmarks) and the detection rate; Table 1 bins them by |yaw| and counts a failure when the NME
is > 10% or the detection rate < 10%.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from cprfa_jax import cpr, dafi as dafi_lib, metrics
from cprfa_jax.geometry import projection
from cprfa_jax.mm.model import shape
from cprfa_jax.stages import compiled


def predictor(config):
  """jitted (params, images uint8 (B, H, W, 3)) -> (DAFI (B, H, W, 3), mask prob (B, H, W)):
  `stages.compiled.unet`, one compilation per network shape."""
  return compiled.unet(config)


@functools.partial(jax.jit, static_argnames=("hw",))
def gt_vertex_pixels(model3d, alpha_id_BxK, alpha_exp_BxE, pose_Bx6, hw):
  """Ground-truth pixel positions (B, V, 2) of every vertex (Eq. 1 + Eq. 2)."""
  verts = jax.vmap(shape, in_axes=(None, 0, 0))(model3d, alpha_id_BxK, alpha_exp_BxE)
  return projection.to_pixels(jax.vmap(projection.project)(verts, pose_Bx6), hw)


def decode_set(config, params, model3d, source, num: int, landmark_net=None):
  """Runs the U-Net and decodes all vertices of the first `num` examples of `source`.

  Returns a dict of (N, ...) arrays: pred (N, V, 2), detected (N, V), gt (N, V, 2),
  landmarks (N, 68, 2), yaw (N,), and the first few images / DAFIs / masks for pictures.
  landmark_net: optional (predict, params) of the landmark network (`stages.landmarks
  .predictor`): its 68 points on the same images go to `lm_pred` (N, 68, 2).
  """
  predict = predictor(config)
  tree = dafi_lib.build_pncc_tree(model3d.pncc_Vx3)
  all_v = np.arange(model3d.num_vertices)
  hw = (config.data.image_size,) * 2
  out = {k: [] for k in ("pred", "detected", "gt", "landmarks", "yaw")}
  pictures = []
  b = config.eval.batch_size
  for lo in range(0, num, b):
    exs = [source[i] for i in range(lo, min(lo + b, num))]
    batch = {k: np.stack([e[k] for e in exs]) for k in exs[0]}
    if batch["image"].shape[1:3] != hw:
      raise ValueError(f"test images are {batch['image'].shape[1:3]}, the model was trained at "
                       f"{hw}: use a test set built at --config.data.image_size={hw[0]}")
    pdafi, pmask = jax.device_get(predict(params, batch["image"]))
    if landmark_net is not None:
      out.setdefault("lm_pred", []).append(np.asarray(landmark_net[0](landmark_net[1], batch["image"])[0]))
    for i in range(len(exs)):
      pos, det = dafi_lib.decode_dafi_kdtree(pdafi[i], pmask[i] > 0.5, tree, all_v,
                                             config.eval.match_dist)
      out["pred"].append(pos)
      out["detected"].append(det)
      if len(pictures) < 8:
        pictures.append((batch["image"][i], batch["dafi"][i], pdafi[i] * (pmask[i, ..., None] > 0.5),
                         pmask[i]))
    out["gt"].append(np.asarray(gt_vertex_pixels(model3d, batch["alpha_id"], batch["alpha_exp"],
                                                 batch["pose"], hw)))
    out["landmarks"].append(batch["landmarks"])
    out["yaw"].append(batch["yaw"])
  res = {k: (np.stack(v) if k in ("pred", "detected") else np.concatenate(v)) for k, v in out.items()}
  if landmark_net is not None:
    res["lm_pred"] = res["lm_pred"].astype(np.float32)
  res["pictures"] = pictures
  return res


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


def select_vertices(decoded, model3d, c: int, tau: float, seed: int = 0) -> dict:
  """§2.2 on the reference set: p1 (detection frequency), p2 (accuracy: error < tau, in
  landmark-box-normalised units), the top C/2 per face half, and the 3-channel layout."""
  norm = np.asarray(metrics.box_size(decoded["landmarks"]))[:, None]          # (R, 1)
  err = np.linalg.norm(decoded["pred"] - decoded["gt"], axis=-1) / np.maximum(norm, 1e-9)
  p1, p2 = cpr.selection_probabilities(decoded["detected"], err, tau)
  left, right = cpr.select_vertices(p1, p2, np.asarray(model3d.mean_Vx3)[:, 0], c)
  return {"left": left, "right": right, "selected": cpr.selected_vertices(left, right),
          "layout": cpr.cpr_layout(c, seed), "p1": p1.astype(np.float32),
          "p2": p2.astype(np.float32)}


def picture(pictures) -> np.ndarray:
  """Rows of input | true DAFI | predicted DAFI | predicted mask, uint8 RGB."""
  rows = []
  for img, true_dafi, pred_dafi, pmask in pictures:
    to8 = lambda x: (np.clip(x, 0, 1) * 255).astype(np.uint8)
    rows.append(np.concatenate([img, to8(true_dafi), to8(pred_dafi),
                                np.repeat(to8(pmask)[..., None], 3, -1)], 1))
  return np.concatenate(rows, 0)

