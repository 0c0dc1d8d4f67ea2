"""Point-set selection for CPR (§2.2): which C vertices, and how they fill the 3 channels.

The paper ranks vertices by two probabilities measured with the trained U-Net on a reference
set (1% of the training data, §3.1): p1, how often the vertex is visible (detected), and p2,
how accurately it is localised. We use

    p1 = (# reference images where the vertex is detected) / (# reference images)
    p2 = (# of those detections with error < tau) / (# detections)
    score = p1 * p2  = P(detected and accurate), assuming the two are independent,

and take the top C/2 vertices of each half of the face. Channel 1 holds the subject's left half
(x > 0 in the canonical frame), channel 2 the right half (x <= 0, midline included), channel 3
every other vertex of each of the first two; each channel's order is shuffled with a fixed seed
"to minimize any local correlations" (§2.2).
"""

from __future__ import annotations

import numpy as np


def selection_probabilities(detected_RxV, error_RxV, tau: float):
  """p1, p2 (§2.2) from R reference images.

  detected_RxV: bool, vertex detected on the image's DAFI; error_RxV: distance between the
  decoded and the ground-truth projected position (any unit, same as tau; ignored where not
  detected). Returns p1_V, p2_V in [0, 1]; p2 is 0 for a never-detected vertex.
  """
  det = np.asarray(detected_RxV, bool)
  err = np.asarray(error_RxV, np.float64)
  if det.shape != err.shape or det.ndim != 2:
    raise ValueError(f"detected {det.shape} and error {err.shape} must both be (R, V)")
  n_det = det.sum(0)
  p1 = n_det / max(det.shape[0], 1)
  accurate = (det & (err < tau)).sum(0)
  p2 = np.where(n_det > 0, accurate / np.maximum(n_det, 1), 0.0)
  return p1, p2


def select_vertices(p1_V, p2_V, x_V, c: int):
  """Top C/2 vertices of each face half by p1 * p2 (ties: lower index first).

  x_V: the mean shape's x coordinate in the canonical frame (x > 0 is the subject's left).
  Returns (left_idx, right_idx), each (C/2,) int32, best first.
  """
  if c <= 0 or c % 4:
    raise ValueError(f"C={c}: must be a positive multiple of 4 (3 channels of N = C/2, "
                     "channel 3 takes N/2 from each side)")
  score = np.asarray(p1_V, np.float64) * np.asarray(p2_V, np.float64)
  x = np.asarray(x_V)
  halves = []
  for side in (x > 0, x <= 0):
    idx = np.flatnonzero(side)
    if idx.size < c // 2:
      raise ValueError(f"C={c} needs {c // 2} vertices on each half of the face; one half has "
                       f"{idx.size}. Use a smaller C or a denser model.")
    order = np.argsort(-score[idx], kind="stable")
    halves.append(idx[order[: c // 2]].astype(np.int32))
  return halves[0], halves[1]


def cpr_layout(c: int, seed: int = 0) -> np.ndarray:
  """Channel layout (3, N) of indices into the selected list [left (N), right (N)], N = C/2.

  Channel 3 takes every other vertex of each side's list, so it holds N/2 vertices from each
  half and shares them with channels 1 and 2 (the paper's "evenly selected from the vertices
  sampled in the first two channels").
  """
  if c <= 0 or c % 4:
    raise ValueError(f"C={c}: must be a positive multiple of 4")
  n = c // 2
  rng = np.random.default_rng(seed)
  left, right = np.arange(n), np.arange(n, c)
  both = np.concatenate([left[::2], right[::2]])
  return np.stack([rng.permutation(ch) for ch in (left, right, both)]).astype(np.int32)


def selected_vertices(left_idx, right_idx) -> np.ndarray:
  """The C model vertex indices that `cpr_layout` indexes into: [left, right]."""
  return np.concatenate([left_idx, right_idx]).astype(np.int32)
