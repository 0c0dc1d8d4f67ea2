"""Evaluation metrics: landmark NME, yaw-binned summaries, CED/AUC, failure and detection rates.

The protocol is the field's since 3DDFA (its benchmark code: cleardusk/3DDFA
`benchmark_aflw2000.py` and `benchmark_aflw.py`), which CPRFA follows (§3.2-3.5):

* The NME of one image is the mean 2D Euclidean distance between predicted and ground-truth
  points divided by sqrt(w * h) of the 2D bounding box of the image's ground-truth 68 landmarks
  (all 68, visible or not). AFLW2000-3D averages over the 68 landmarks, AFLW over its visible
  ones of 21, COFW over the 51 inner ones; the box is always the 68-landmark box.
* Images are binned by |yaw| into [0, 30], (30, 60], (60, 90] degrees. Mean is the mean of the
  three bin means (not the mean over images) and Std the standard deviation of the three bin
  means.

Std, checked against the numbers: 3DDFA's benchmark code computes `np.std(mean_all)`, the
population std (ddof=0), and so does `binned_summary` by default. In the CPRFA paper every row
of Table 1 (NME and ADR) and the AFLW rows of CPRFA (0.76) and LDFC (0.85) in Table 2 match
ddof=0 to the printed rounding, as does LDFC on AFLW2000-3D (2.44). The rows copied from the
3DDFA and 3DSTN papers (AFLW 0.99, 0.87; AFLW2000-3D 2.21, 1.42) and CPRFA's own AFLW2000-3D
row (1.20; ddof=0 gives 0.98) match the sample std (ddof=1) instead. Pass `ddof=1` to compare
with those rows.

Per-example maths (`nme`, `vertex_nme`, `box_size`, `detection_rate`) is jax.numpy over any
leading batch dimensions, so it can be jitted and vmapped; shapes are checked at trace time.
Aggregation over a data set (`yaw_bins`, `binned_summary`, `ced_curve`, `auc`, `failure_rate`)
is NumPy on the host. All NMEs are fractions: multiply by 100 for the papers' percentages.

NaN is the one documented "no value" result: `nme` and `vertex_nme` return NaN for an image
whose ground-truth box has zero width or height (or NaN coordinates) or which has no
visible/detected point. The aggregators treat NaN as a failure (`ced_curve`, `auc`,
`failure_rate`) or refuse it unless told to omit it (`binned_summary`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from cprfa_jax.geometry import projection
from cprfa_jax.mm.model import vertices

BIN_LABELS = ("[0, 30]", "(30, 60]", "(60, 90]")
BIN_EDGES_DEG = (30.0, 60.0)


# ---------------------------------------------------------------------------------------------
# Per-example maths (jax.numpy)
# ---------------------------------------------------------------------------------------------


def _as_float(x):
  x = jnp.asarray(x)
  return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def _check_points(name, x):
  if x.ndim < 2 or x.shape[-1] != 2:
    hint = ""
    if x.ndim >= 2 and x.shape[-2] == 2:
      hint = " It looks transposed (3DDFA stores points as 2xL): swap the last two axes."
    elif x.ndim >= 2 and x.shape[-1] == 3:
      hint = " Pass the x, y columns only ([..., :2])."
    raise ValueError(f"{name} must have shape (..., L, 2); got {tuple(x.shape)}.{hint}")
  if x.shape[-2] == 0:
    raise ValueError(f"{name} has no points: shape {tuple(x.shape)}.")


def box_size(points_BxKx2) -> jnp.ndarray:
  """sqrt(w * h) of the 2D bounding box of each point set: (..., K, 2) -> (...)."""
  pts = _as_float(points_BxKx2)
  _check_points("points_BxKx2", pts)
  wh = jnp.max(pts, axis=-2) - jnp.min(pts, axis=-2)
  return jnp.sqrt(wh[..., 0] * wh[..., 1])


def nme(pred_BxLx2, gt_BxLx2, visible_BxL=None, box_BxKx2=None) -> jnp.ndarray:
  """Normalised mean error of 2D points per image: (..., L, 2) -> (...), a fraction.

  Args:
    pred_BxLx2: predicted points (B, L, 2); any leading dims, any L (68, 51, 21, ...).
    gt_BxLx2: ground-truth points, the same shape.
    visible_BxL: optional mask (B, L), nonzero = the point counts in the mean error (COFW's 51
      inner points, AFLW's visible ones). Masked-out points may hold any value, even NaN.
    box_BxKx2: optional points (B, K, 2) whose 2D box normalises the error; defaults to gt.
      Pass the 68 ground-truth landmarks here when the error is over other points (AFLW's 21
      points, DAFI vertices).

  Returns:
    (B,) mean over the counted points of ||pred - gt||, divided by sqrt(w * h) of the box.
    NaN where the box has zero width or height (or NaN coordinates) or no point is counted.
  """
  pred, gt = _as_float(pred_BxLx2), _as_float(gt_BxLx2)
  _check_points("pred_BxLx2", pred)
  if gt.shape != pred.shape:
    raise ValueError(f"pred_BxLx2 and gt_BxLx2 must have the same shape; got "
                     f"{tuple(pred.shape)} and {tuple(gt.shape)}.")
  box = gt if box_BxKx2 is None else _as_float(box_BxKx2)
  _check_points("box_BxKx2", box)
  if box.shape[:-2] != pred.shape[:-2]:
    raise ValueError(f"box_BxKx2 must have the batch dims of pred_BxLx2 {tuple(pred.shape[:-2])};"
                     f" got shape {tuple(box.shape)}.")
  if visible_BxL is None:
    mask_BxL = jnp.ones(pred.shape[:-1], bool)
  else:
    mask_BxL = jnp.asarray(visible_BxL).astype(bool)
    if mask_BxL.shape != pred.shape[:-1]:
      raise ValueError(f"visible_BxL must have shape {tuple(pred.shape[:-1])} to match pred_BxLx2 "
                       f"{tuple(pred.shape)}; got {tuple(mask_BxL.shape)}.")
  err_BxL = jnp.sqrt(jnp.sum(jnp.square(pred - gt), axis=-1))
  # `where`, not a product: masked-out points may be NaN and NaN * 0 is NaN.
  n_B = jnp.sum(mask_BxL, axis=-1)
  mean_B = jnp.sum(jnp.where(mask_BxL, err_BxL, 0.0), axis=-1) / jnp.maximum(n_B, 1)
  norm_B = box_size(box)
  ok_B = (n_B > 0) & (norm_B > 0)  # False for a NaN norm as well
  return jnp.where(ok_B, mean_B / jnp.where(ok_B, norm_B, 1.0), jnp.nan)


def vertex_nme(pred_BxCx2, gt_BxCx2, detected_BxC, gt_landmarks_Bx68x2,
               empty_value=float("nan")) -> jnp.ndarray:
  """Table 1's vertex-annotation NME: error over the detected vertices only. -> (B,).

  Args:
    pred_BxCx2: 2D positions at which the C vertices were found on the DAFI (B, C, 2).
    gt_BxCx2: the ground-truth projections of the same vertices (B, C, 2).
    detected_BxC: nonzero = the vertex was detected (§3.3); others may hold any value.
    gt_landmarks_Bx68x2: ground-truth 68 landmarks (B, 68, 2); their box normalises the error,
      so vertex NMEs compare with landmark NMEs.
    empty_value: the result for an image with no detected vertex. NaN by default: an image with
      nothing detected has no annotation error, and Table 1 already counts it as a failure
      through its detection rate (< 10%). Pass 1.0 for §3.4's convention ("the NME is set to
      be 1"). A degenerate landmark box still gives NaN.
  """
  detected_BxC = jnp.asarray(detected_BxC).astype(bool)
  out_B = nme(pred_BxCx2, gt_BxCx2, detected_BxC, box_BxKx2=gt_landmarks_Bx68x2)
  return jnp.where(jnp.any(detected_BxC, axis=-1), out_B, jnp.asarray(empty_value, out_B.dtype))


def detection_rate(detected_BxC) -> jnp.ndarray:
  """Fraction of the C considered vertices detected on each image (§3.3): (B, C) -> (B,)."""
  detected_BxC = jnp.asarray(detected_BxC)
  if detected_BxC.ndim < 1 or detected_BxC.shape[-1] == 0:
    raise ValueError(f"detected_BxC must have shape (..., C) with C >= 1; "
                     f"got {tuple(detected_BxC.shape)}.")
  return jnp.mean(detected_BxC.astype(bool).astype(jnp.float32), axis=-1)


# ---------------------------------------------------------------------------------------------
# Aggregation over a data set (NumPy, host)
# ---------------------------------------------------------------------------------------------


def _vector(name, x):
  x = np.asarray(x, dtype=np.float64)
  if x.ndim != 1 or x.size == 0:
    raise ValueError(f"{name} must be a non-empty 1-D array (B,); got shape {x.shape}.")
  return x


def _errors(name, x):
  x = _vector(name, x)
  if np.any(x < 0):
    raise ValueError(f"{name} holds negative errors (first at index {np.flatnonzero(x < 0)[0]}:"
                     f" {x[x < 0][0]}); errors are distances and cannot be negative.")
  return x


def yaw_bins(yaw_deg_B) -> np.ndarray:
  """Yaw bin of each image: 0 for |yaw| in [0, 30], 1 for (30, 60], 2 for (60, 90] degrees.

  |yaw| > 90 goes in bin 2. Yaw is in degrees (radians would all land in bin 0). Any shape in,
  the same shape of int32 out; NaN or infinite yaw raises ValueError.
  """
  yaw = np.asarray(yaw_deg_B, dtype=np.float64)
  bad = ~np.isfinite(yaw)
  if np.any(bad):
    raise ValueError(f"yaw_deg_B holds {int(bad.sum())} non-finite values (first at flat index "
                     f"{np.flatnonzero(bad.ravel())[0]}); every image needs a yaw to be binned.")
  a = np.abs(yaw)
  return np.where(a <= BIN_EDGES_DEG[0], 0, np.where(a <= BIN_EDGES_DEG[1], 1, 2)).astype(np.int32)


def binned_summary(nme_B, yaw_deg_B, ddof=0, nan_policy="raise") -> dict:
  """The field's yaw-binned report of per-image values (NME, or detection rates for ADR).

  Args:
    nme_B: per-image values (B,), e.g. from `nme`; fractions stay fractions.
    yaw_deg_B: per-image yaw in degrees (B,).
    ddof: 0 (default) for the population std of the three bin means, as 3DDFA's code and most
      of CPRFA's own numbers; 1 for the sample std some published rows use (module docstring).
    nan_policy: "raise" (default) refuses NaN values, naming how many and where; "omit" leaves
      them out of every mean and count and reports how many in `num_omitted`.

  Returns:
    dict with `bin_mean` (3,) (NaN for an empty bin), `bin_count` (3,) int, `mean` (the mean of
    the three bin means) and `std` (their std; both NaN when a bin is empty), `overall_mean`
    (the mean over images), `num_images` (counted), `num_omitted`, `bin_labels`.
  """
  values_B = _vector("nme_B", nme_B)
  yaw_B = _vector("yaw_deg_B", yaw_deg_B)
  if values_B.shape != yaw_B.shape:
    raise ValueError(f"nme_B and yaw_deg_B must have the same shape; got {values_B.shape} and "
                     f"{yaw_B.shape}.")
  if ddof not in (0, 1):
    raise ValueError(f"ddof must be 0 (population std) or 1 (sample std); got {ddof!r}.")
  if nan_policy not in ("raise", "omit"):
    raise ValueError(f"nan_policy must be 'raise' or 'omit'; got {nan_policy!r}.")
  bins_B = yaw_bins(yaw_B)
  nan_B = np.isnan(values_B)
  if nan_policy == "raise" and np.any(nan_B):
    raise ValueError(
        f"{int(nan_B.sum())} of {values_B.size} values are NaN (first at index "
        f"{np.flatnonzero(nan_B)[0]}): a degenerate ground-truth box or no visible/detected "
        f"point. Pass nan_policy='omit' to leave them out, or replace them first (e.g. with 1.0, "
        f"as §3.4 does when DAFI detects no vertex).")
  keep_B = ~nan_B
  bin_count = np.array([np.sum(keep_B & (bins_B == k)) for k in range(3)], dtype=np.int64)
  bin_mean = np.array([values_B[keep_B & (bins_B == k)].mean() if bin_count[k] else np.nan
                       for k in range(3)])
  return {
      "bin_mean": bin_mean,
      "bin_count": bin_count,
      "mean": float(bin_mean.mean()),
      "std": float(bin_mean.std(ddof=ddof)),
      "overall_mean": float(values_B[keep_B].mean()) if keep_B.any() else float("nan"),
      "num_images": int(keep_B.sum()),
      "num_omitted": int(nan_B.sum()),
      "bin_labels": BIN_LABELS,
  }


def _check_max_error(max_error):
  if not (np.isfinite(max_error) and max_error > 0):
    raise ValueError(f"max_error must be a positive finite number; got {max_error!r}.")


def ced_curve(errors_B, max_error=0.1, num=101):
  """Cumulative error distribution: the fraction of images with error <= each threshold.

  Args:
    errors_B: per-image errors (B,), >= 0. NaN counts as above every threshold (a failure).
    max_error: the last threshold (0.1 = 10% NME, the range of the paper's Fig. 5).
    num: number of thresholds, evenly spaced from 0 to max_error inclusive.

  Returns:
    (thresholds (num,), fraction_below (num,)), fraction_below non-decreasing, ending at the
    fraction of errors <= max_error.
  """
  e_B = _errors("errors_B", errors_B)
  _check_max_error(max_error)
  if int(num) != num or num < 2:
    raise ValueError(f"num must be an integer >= 2; got {num!r}.")
  thresholds = np.linspace(0.0, max_error, int(num))
  # np.sort puts NaN last and searchsorted orders it the same way, so NaN is never counted.
  fraction = np.searchsorted(np.sort(e_B), thresholds, side="right") / e_B.size
  return thresholds, fraction


def auc(errors_B, max_error=0.1) -> float:
  """Area under the CED on [0, max_error], divided by max_error: in [0, 1], higher is better.

  Exact for the CED step function: the mean over images of max(0, 1 - error / max_error), NaN
  counting as 0. The trapezoid rule over `ced_curve(errors_B, max_error, num)` approaches it to
  within 1 / (num - 1).
  """
  e_B = _errors("errors_B", errors_B)
  _check_max_error(max_error)
  return float(np.mean(np.nan_to_num(np.clip(1.0 - e_B / max_error, 0.0, 1.0), nan=0.0)))


def failure_rate(nme_B, detection_rate_B=None, nme_threshold=0.10,
                 detection_threshold=0.10) -> float:
  """Fraction of images with NME > nme_threshold or detection rate < detection_threshold.

  Table 1's 'Failure' (both thresholds 10%); e.g. 50 of 512 vertices detected is 0.098 < 10%, a
  failure. Without detection rates only the NME counts. NaN NME or rate counts as a failure.
  Returns a fraction (multiply by 100 for Table 1's %).
  """
  e_B = _vector("nme_B", nme_B)
  fail_B = ~(e_B <= nme_threshold)
  if detection_rate_B is not None:
    r_B = _vector("detection_rate_B", detection_rate_B)
    if r_B.shape != e_B.shape:
      raise ValueError(f"nme_B and detection_rate_B must have the same shape; got {e_B.shape} "
                       f"and {r_B.shape}.")
    fail_B |= ~(r_B >= detection_threshold)
  return float(fail_B.mean())


# ---------------------------------------------------------------------------------------------
# Benchmark protocols: AFLW (21 points), COFW-68 (51 inner points), as the field scores them
# ---------------------------------------------------------------------------------------------

# 3DDFA's `benchmark_aflw.py` (`ind_68to21`): each of AFLW's 21 points is the mean of these
# 1-based iBUG indices of a 68-point prediction (the two eye centres and the mouth centre are
# means). `../shared/data-formats.md` §4.
AFLW21_FROM_IBUG68 = ((18,), (20,), (22,), (23,), (25,), (27,), (37,), tuple(range(37, 43)),
                      (40,), (43,), tuple(range(43, 49)), (46,), (3,), (32,), (31,), (36,),
                      (15,), (49,), tuple(range(61, 69)), (55,), (9,))
COFW_INNER_51 = np.arange(17, 68)          # iBUG 18-68 (1-based): COFW-68's scored points
RIGHT_EYE, LEFT_EYE = np.arange(36, 42), np.arange(42, 48)   # iBUG 37-42, 43-48 (1-based)
PROTOCOLS = ("aflw21", "cofw68")


def aflw21_matrix() -> np.ndarray:
  """(21, 68) averaging matrix: `M @ points_68x2` gives AFLW's 21 points."""
  m = np.zeros((21, 68), np.float32)
  for i, group in enumerate(AFLW21_FROM_IBUG68):
    m[i, np.asarray(group) - 1] = 1.0 / len(group)
  return m


def aflw21_from_68(points_Bx68x2) -> jnp.ndarray:
  """AFLW's 21 points from 68 iBUG points: (..., 68, 2) -> (..., 21, 2)."""
  pts = _as_float(points_Bx68x2)
  if pts.shape[-2:] != (68, 2):
    raise ValueError(f"points_Bx68x2 must have shape (..., 68, 2); got {tuple(pts.shape)}.")
  return jnp.einsum("kl,...lc->...kc", jnp.asarray(aflw21_matrix(), pts.dtype), pts)


def interocular_distance(points_Bx68x2) -> jnp.ndarray:
  """Distance between the eye centres (mean of iBUG 37-42 and of 43-48): (..., 68, 2) -> (...).
  COFW-68's own benchmark normaliser."""
  pts = _as_float(points_Bx68x2)
  if pts.shape[-2:] != (68, 2):
    raise ValueError(f"points_Bx68x2 must have shape (..., 68, 2); got {tuple(pts.shape)}.")
  d = jnp.mean(pts[..., RIGHT_EYE, :], -2) - jnp.mean(pts[..., LEFT_EYE, :], -2)
  return jnp.sqrt(jnp.sum(jnp.square(d), -1))


def nme_by(pred_BxLx2, gt_BxLx2, norm_B, visible_BxL=None) -> jnp.ndarray:
  """Mean point error over `norm_B` (any normaliser, e.g. `interocular_distance`): (B,).
  NaN where the normaliser is not positive or no point is counted, as `nme`."""
  pred, gt = _as_float(pred_BxLx2), _as_float(gt_BxLx2)
  _check_points("pred_BxLx2", pred)
  if gt.shape != pred.shape:
    raise ValueError(f"pred_BxLx2 and gt_BxLx2 must have the same shape; got "
                     f"{tuple(pred.shape)} and {tuple(gt.shape)}.")
  mask = (jnp.ones(pred.shape[:-1], bool) if visible_BxL is None
          else jnp.asarray(visible_BxL).astype(bool))
  err = jnp.sqrt(jnp.sum(jnp.square(pred - gt), -1))
  n = jnp.sum(mask, -1)
  mean = jnp.sum(jnp.where(mask, err, 0.0), -1) / jnp.maximum(n, 1)
  norm = _as_float(norm_B)
  ok = (n > 0) & (norm > 0)
  return jnp.where(ok, mean / jnp.where(ok, norm, 1.0), jnp.nan)


def aflw21_nme(pred_Bx68x2, gt21_Bx21x2, valid_Bx21, box68_Bx68x2) -> jnp.ndarray:
  """3DDFA's AFLW NME: the prediction's 21 points against the annotated ones (`valid`: both
  coordinates != -1 in `AFLW_GT_pts21.npy`), over sqrt(w h) of the 68-point box
  (`AFLW_GT_pts68.npy`). (B,)."""
  return nme(aflw21_from_68(pred_Bx68x2), gt21_Bx21x2, valid_Bx21, box68_Bx68x2)


def cofw68_nme(pred_Bx68x2, gt_Bx68x2, occluded_Bx68=None, normaliser="box",
               include_occluded=True) -> jnp.ndarray:
  """COFW-68 NME over the 51 inner points (iBUG 18-68). normaliser "box": sqrt(w h) of the 68
  ground-truth points' box (3DDFA's, the paper's); "interocular": the eye-centre distance
  (the benchmark's own script). Occluded points count unless `include_occluded=False`
  (the benchmark's default includes them). (B,)."""
  gt = _as_float(gt_Bx68x2)
  if gt.shape[-2:] != (68, 2):
    raise ValueError(f"gt_Bx68x2 must have shape (..., 68, 2); got {tuple(gt.shape)}.")
  mask = jnp.broadcast_to(jnp.isin(jnp.arange(68), COFW_INNER_51), gt.shape[:-1])
  if not include_occluded:
    if occluded_Bx68 is None:
      raise ValueError("include_occluded=False needs occluded_Bx68.")
    mask = mask & ~jnp.asarray(occluded_Bx68).astype(bool)
  if normaliser == "box":
    return nme(pred_Bx68x2, gt, mask, gt)
  if normaliser == "interocular":
    return nme_by(pred_Bx68x2, gt, interocular_distance(gt), mask)
  raise ValueError(f"normaliser must be 'box' or 'interocular'; got {normaliser!r}.")


# -- test-time confidence (no ground truth) -----------------------------------------------------

MIN_DETECTED = 0.1   # fewer detected selected vertices than this fraction: a likely failure


def failure_flag(confidence_N, detected_fraction_N, failure_nme: float):
  """The test-time failure flag (the predictor's `failure`, scored in Table 2's report): the
  fit's reprojection confidence above `failure_nme` (or NaN: nothing detected), or fewer than
  MIN_DETECTED of the C selected vertices detected. NumPy or JAX arrays."""
  return ~(confidence_N <= failure_nme) | (detected_fraction_N < MIN_DETECTED)


@jax.jit
def reprojection_confidence(model3d, alpha_NxA, pose_Nx6, y_all_NxVx2, det_all_NxV):
  """Mean distance over the detected vertices between the fitted projection and the DAFI,
  over the fitted landmark box size (NME units). NaN when nothing is detected."""
  def one(a, p, y, d):
    proj = projection.project(vertices(model3d, a), p)
    err = jnp.sum(jnp.where(d, jnp.linalg.norm(proj - y, axis=-1), 0.0)) / jnp.maximum(d.sum(), 1)
    box = box_size(proj[model3d.landmarks_68])
    return jnp.where(d.sum() > 0, err / jnp.maximum(box, 1e-6), jnp.nan)

  return jax.vmap(one)(alpha_NxA, pose_Nx6, y_all_NxVx2, det_all_NxV)
