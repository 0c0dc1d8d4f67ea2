"""Controlled DAFI corruptions for the robustness study (issue 12): each turns a ground-truth
DAFI + face mask into one a U-Net might have predicted, by one documented amount.

A corruption is `fn(dafi_HxWx3, mask_HxW, level, rng, spacing) -> (dafi, mask)` on one example
(NumPy, float32 codes in [0, 1], bool mask); level 0 returns the input unchanged, and every level
is in the unit below, so curves over levels compare across faces and image sizes:

* `holes`     — level = fraction of the face mask removed, in smooth random blobs (missed regions);
* `occluders` — the same fraction, removed by hands, bars and patches (`data.wild`'s shapes);
* `noise`     — level = σ of Gaussian noise on each pixel's code, in *vertex spacings* (the
                median distance from a vertex's PNCC code to its nearest neighbour's, `spacing`):
                at 1 a pixel's nearest code is often a neighbour vertex's;
* `warp`      — level = largest displacement in pixels of a smooth random field that moves the
                DAFI and its mask (codes land on the wrong pixels, coherently);
* `leak`      — level = pixels the mask grows by onto the background/hair, each new pixel
                claiming the code of the nearest face pixel (border vertices pulled outward).

Resolution is the study's fifth axis: the same faces rendered at 64 and 128 px.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from cprfa_jax.data import wild
from cprfa_jax.decode import pixel

# The levels the study sweeps (none to severe), in each corruption's unit.
LEVELS = {
    "holes": (0.0, 0.15, 0.3, 0.5, 0.7, 0.9),
    "occluders": (0.0, 0.15, 0.3, 0.5, 0.7, 0.9),
    "noise": (0.0, 0.25, 0.5, 1.0, 2.0, 4.0),
    "warp": (0.0, 1.0, 2.0, 3.0, 4.0, 6.0),
    "leak": (0.0, 1.0, 2.0, 3.0, 5.0, 8.0),
}
UNITS = {"holes": "fraction of the face removed", "occluders": "fraction of the face removed",
         "noise": "σ in vertex spacings", "warp": "largest shift (px)",
         "leak": "mask grown by (px)"}


def pncc_spacing(pncc_Vx3) -> float:
  """Median distance from each vertex's PNCC code to its nearest other vertex's code."""
  pncc = np.asarray(pncc_Vx3, np.float64)
  d, _ = pixel.build_pncc_tree(pncc).query(pncc, k=2)
  return float(np.median(d[:, 1]))


def _smooth_field(rng, hw, scale_px):
  """A smooth zero-mean random field (H, W), features about `scale_px` across."""
  h, w = hw
  coarse = rng.standard_normal((max(2, int(np.ceil(h / scale_px)) + 1),
                                max(2, int(np.ceil(w / scale_px)) + 1))).astype(np.float32)
  return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def _remove_ranked(mask, rank_HxW, level):
  """Removes the round(level * n) face pixels of lowest rank (n = face pixels)."""
  idx = np.flatnonzero(mask)
  k = int(round(level * len(idx)))
  if k == 0:
    return mask
  order = np.argsort(rank_HxW.ravel()[idx], kind="stable")
  out = mask.copy().ravel()
  out[idx[order[:k]]] = False
  return out.reshape(mask.shape)


def holes(dafi, mask, level, rng, spacing=None):
  """Removes `level` of the face pixels where a smooth random field is highest: blobs of about a
  sixth of the face, merging as the level grows."""
  del spacing
  mask = np.asarray(mask, bool)
  if level <= 0 or not mask.any():
    return dafi, mask
  ys, xs = np.nonzero(mask)
  size = max(np.ptp(ys), np.ptp(xs), 1) + 1
  field = _smooth_field(rng, mask.shape, max(2.0, size / 6.0))
  return dafi, _remove_ranked(mask, -field, level)


def occluders(dafi, mask, level, rng, spacing=None):
  """Removes `level` of the face pixels with occluder shapes (hands, bars, patches) placed on
  the face, one after another; the last is cut to the exact amount, growing from its middle."""
  del spacing
  mask = np.asarray(mask, bool)
  if level <= 0 or not mask.any():
    return dafi, mask
  ys, xs = np.nonzero(mask)
  box = np.array([[xs.min(), ys.min()], [xs.max(), ys.max()]], np.float64)
  target = int(round(level * mask.sum()))
  # rank: the order of removal (the occluder's index, then the distance from its middle)
  rank = np.full(mask.shape, np.inf)
  covered = np.zeros_like(mask)
  yy, xx = np.mgrid[:mask.shape[0], :mask.shape[1]]
  for i in range(200):   # each occluder adds face pixels; 200 is never reached in practice
    if (covered & mask).sum() >= target:
      break
    kind = rng.choice(["hand", "bar", "patch"])
    new = wild.random_occluder(rng, mask.shape, box, kind=kind)[1] & ~covered
    if new.any():
      cy, cx = np.nonzero(new)
      rank[new] = i * 1e6 + np.hypot(yy - cy.mean(), xx - cx.mean())[new]
      covered |= new
  if (covered & mask).sum() < target:     # pathological (tiny masks): finish with holes
    rank[mask & ~covered] = 1e12 + rng.random((mask & ~covered).sum())
  return dafi, _remove_ranked(mask, rank, level)


def noise(dafi, mask, level, rng, spacing):
  """Gaussian noise of σ = level × spacing on every face pixel's code (clipped to [0, 1])."""
  dafi = np.asarray(dafi, np.float32)
  if level <= 0:
    return dafi, mask
  noisy = dafi + rng.normal(0.0, level * spacing, dafi.shape).astype(np.float32)
  return np.where(np.asarray(mask, bool)[..., None], np.clip(noisy, 0.0, 1.0), dafi), mask


def warp(dafi, mask, level, rng, spacing=None):
  """Moves the DAFI and its mask by a smooth field whose largest shift is `level` pixels
  (nearest-neighbour: no blended codes that belong to no vertex)."""
  del spacing
  dafi, mask = np.asarray(dafi, np.float32), np.asarray(mask, bool)
  if level <= 0 or not mask.any():
    return dafi, mask
  h, w = mask.shape
  ys, xs = np.nonzero(mask)
  scale = max(2.0, (max(np.ptp(ys), np.ptp(xs)) + 1) / 3.0)
  dx, dy = _smooth_field(rng, (h, w), scale), _smooth_field(rng, (h, w), scale)
  # The largest shift anywhere is `level` (not only over the face: pixels next to it receive
  # face codes too).
  k = level / max(float(np.hypot(dx, dy).max()), 1e-6)
  yy, xx = np.mgrid[:h, :w]
  sy = np.clip(np.round(yy - k * dy), 0, h - 1).astype(int)   # each pixel shows the code of
  sx = np.clip(np.round(xx - k * dx), 0, w - 1).astype(int)   # the pixel the field moved here
  return np.where(mask[sy, sx][..., None], dafi[sy, sx], 0.0).astype(np.float32), mask[sy, sx]


def leak(dafi, mask, level, rng, spacing=None):
  """Grows the mask by `level` pixels (Euclidean) onto whatever surrounds the face; each new
  pixel shows the code of the nearest face pixel."""
  del rng, spacing
  dafi, mask = np.asarray(dafi, np.float32), np.asarray(mask, bool)
  if level <= 0 or not mask.any():
    return dafi, mask
  dist, (iy, ix) = ndimage.distance_transform_edt(~mask, return_indices=True)
  grown = dist <= level
  return np.where(grown[..., None], dafi[iy, ix], 0.0).astype(np.float32), grown


CORRUPTIONS = {"holes": holes, "occluders": occluders, "noise": noise, "warp": warp,
               "leak": leak}


def corrupt(kind: str, dafi, mask, level, rng, spacing):
  """`CORRUPTIONS[kind]` with a clear error for an unknown kind."""
  if kind not in CORRUPTIONS:
    raise ValueError(f"corruption {kind!r}: use one of {', '.join(CORRUPTIONS)}")
  return CORRUPTIONS[kind](dafi, mask, level, rng, spacing)


def draw_corruption(rng) -> tuple[str, float]:
  """One (kind, level) of the training distribution of the study's regressors: a kind
  uniformly, a level uniformly between none and its most severe in `LEVELS`, so every (kind,
  level) the study evaluates is inside what they were trained on."""
  kind = list(CORRUPTIONS)[rng.integers(len(CORRUPTIONS))]
  return kind, float(rng.uniform(0.0, LEVELS[kind][-1]))


def random_corruption(dafi, mask, rng, spacing):
  """One example corrupted by a `draw_corruption` draw from the same generator."""
  kind, level = draw_corruption(rng)
  return corrupt(kind, dafi, mask, level, rng, spacing)


# -- cpr.dafi_source=corrupted_gt: what the regressors train on ---------------------------------
def corrupt_dafi(dafi_BxHxWx3, mask_BxHxW, rng: np.random.Generator, noise: float = 0.004,
                 max_holes: int = 3):
  """Ground-truth DAFIs made to look predicted: PNCC noise (misplaced matches) and up to
  `max_holes` rectangular holes in the mask (missed regions, occluders the U-Net got wrong)."""
  dafi = np.asarray(dafi_BxHxWx3, np.float32).copy()
  mask = np.asarray(mask_BxHxW, bool).copy()
  b, h, w = mask.shape
  dafi += rng.normal(0, noise, dafi.shape).astype(np.float32)
  for i in range(b):
    for _ in range(rng.integers(0, max_holes + 1)):
      hh, ww = rng.integers(h // 8, h // 2, endpoint=True), rng.integers(w // 8, w // 2, endpoint=True)
      y, x = rng.integers(0, h - hh + 1), rng.integers(0, w - ww + 1)
      mask[i, y:y + hh, x:x + ww] = False
  return np.clip(dafi, 0, 1), mask


def corrupted_gt(dafi_BxHxWx3, mask_BxHxW, rngs, study_spacing=None):
  """The DAFIs `cpr.dafi_source=corrupted_gt` trains on, one generator per example:
  `corrupt_dafi` (cpr.corruption=mild), or with `study_spacing` (the model's PNCC vertex
  spacing, cpr.corruption=study) the robustness study's `random_corruption`."""
  if study_spacing is None:
    pairs = [corrupt_dafi(dafi_BxHxWx3[i:i + 1], mask_BxHxW[i:i + 1], r) for i, r in enumerate(rngs)]
    return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])
  pairs = [random_corruption(dafi_BxHxWx3[i], mask_BxHxW[i], r, study_spacing)
           for i, r in enumerate(rngs)]
  return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
