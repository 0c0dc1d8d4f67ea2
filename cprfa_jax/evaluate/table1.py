"""Evaluating the HS-U-Net stage: Table 1 of the paper, from `observe.decode_set`'s decoded sets.

For every test image the predicted DAFI (full resolution, pixels where the predicted mask is
> 0.5) is decoded into vertex positions with the KD-tree of §2.1; a vertex is detected if some
pixel matches it within `eval.match_dist`. Per image and vertex subset (the 68 landmark
vertices, all vertices, the C selected ones) we report the NME of the detected vertices
against their ground-truth projections (normalised by the ground-truth landmark box, as for
landmarks) and the detection rate; Table 1 bins them by |yaw| and counts a failure when the NME
is > 10% or the detection rate < 10%.
"""

from __future__ import annotations

import numpy as np

from cprfa_jax import metrics


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

