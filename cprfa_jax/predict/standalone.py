"""Runs an exported CPRFA predictor (`python -m cprfa_jax.predict export`) with only `jax` and
`numpy`: no flax, no cprfa_jax. Copy this one file next to the artifact.

    import numpy as np, standalone
    model = standalone.load("model.jaxexport")
    crops, k, b = standalone.crop(photo_HxWx3_uint8, [x0, y0, x1, y1], model.meta)
    out = model(crops[None], k[None], b[None])        # dict of NumPy arrays, batch first
    out["landmarks_px"]   # (1, 68, 2) photo pixels; also alpha, pose (of the crop),
                          # vertices_px, confidence, detected, failure, dafi, mask

`crop` resizes with nearest-neighbour sampling (NumPy only), so its crops differ slightly from
the OpenCV area resize `cprfa_jax.predict` uses; give it your own crops for identical results.

File layout: the magic line, the length of a JSON header (8 bytes, little-endian), the header
(image size, box scale, batch size or null for any, the model's triangles and landmark
indices, the output names), then `jax.export`'s serialised function.
"""

from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

MAGIC = b"CPRFA-JAXEXPORT-1\n"


def read(path):
  """(header dict, serialised function bytes) of an artifact."""
  with open(path, "rb") as f:
    blob = f.read()
  if not blob.startswith(MAGIC):
    raise ValueError(f"{path}: not a CPRFA export (no {MAGIC!r} header); write one with "
                     "python -m cprfa_jax.predict export")
  n = int.from_bytes(blob[len(MAGIC):len(MAGIC) + 8], "little")
  start = len(MAGIC) + 8
  return json.loads(blob[start:start + n]), blob[start + n:]


class Loaded:
  """An exported predictor: `__call__(crops (B, S, S, 3) uint8, k (B,), b (B, 2),
  landmarks (B, 68, 2) photo pixels or None)` -> dict of NumPy arrays. Landmarks rows of NaN
  mean "none given" for that face (the artifact's landmark network is used)."""

  def __init__(self, path):
    self.meta, fn = read(path)
    self.exported = jax.export.deserialize(bytearray(fn))

  def __call__(self, crops, k, b, landmarks=None):
    crops = np.asarray(crops, np.uint8)
    n = len(crops)
    lm = (np.full((n, 68, 2), np.nan, np.float32) if landmarks is None
          else np.asarray(landmarks, np.float32).reshape(n, 68, 2))
    given = np.isfinite(lm).all(axis=(1, 2))
    lm = np.where(given[:, None, None], lm, 0.0).astype(np.float32)
    args = (crops, np.asarray(k, np.float32).reshape(n), np.asarray(b, np.float32).reshape(n, 2),
            lm, given)
    fixed = self.meta["batch"]
    if fixed is None:
      return {key: np.asarray(v) for key, v in self.exported.call(*args).items()}
    outs = []
    for lo in range(0, n, fixed):       # a fixed-batch artifact: pad the last batch
      idx = np.minimum(np.arange(lo, lo + fixed), n - 1)
      out = self.exported.call(*(jnp.asarray(a[idx]) for a in args))
      outs.append({key: np.asarray(v)[:min(fixed, n - lo)] for key, v in out.items()})
    return {key: np.concatenate([o[key] for o in outs]) for key in outs[0]}


def load(path) -> Loaded:
  return Loaded(path)


def crop(photo_HxWx3, box_xyxy, meta):
  """The network's crop of one face (its 68-landmark box [x0, y0, x1, y1]), with NumPy only:
  (crop (S, S, 3) uint8, k, b (2,)) with crop pixel = k * photo pixel + b, framed as
  `cprfa_jax.data.real.crop_box` frames it."""
  x0, y0, x1, y1 = (float(v) for v in box_xyxy)
  size, scale = int(meta["image_size"]), float(meta["box_scale"])
  side = int(round(scale * max(x1 - x0, y1 - y0)))
  if side < 2:
    raise ValueError(f"box {box_xyxy} is degenerate")
  cx0 = int(np.round((x0 + x1) / 2 - side / 2))
  cy0 = int(np.round((y0 + y1) / 2 - side / 2))
  k = size / side
  b = k * (0.5 - np.array([cx0, cy0], np.float64)) - 0.5
  # The photo pixel whose centre each crop pixel's centre maps to (nearest neighbour).
  src = (np.arange(size) - b[:, None]) / k
  xs, ys = np.round(src[0]).astype(int), np.round(src[1]).astype(int)
  h, w = photo_HxWx3.shape[:2]
  inside = (ys[:, None] >= 0) & (ys[:, None] < h) & (xs[None] >= 0) & (xs[None] < w)
  out = photo_HxWx3[np.clip(ys, 0, h - 1)[:, None], np.clip(xs, 0, w - 1)[None]]
  return np.where(inside[..., None], out, 0).astype(np.uint8), np.float32(k), b.astype(np.float32)


if __name__ == "__main__":   # python standalone.py model.jaxexport crops.npy k.npy b.npy out.npz
  m = load(sys.argv[1])
  result = m(np.load(sys.argv[2]), np.load(sys.argv[3]), np.load(sys.argv[4]))
  np.savez(sys.argv[5], **result)
