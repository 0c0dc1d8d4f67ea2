"""DAFI decoding (§2.1): images of PNCC codes -> observed vertex positions and detection flags."""

from __future__ import annotations

import jax
import numpy as np

from cprfa_jax.decode import pixel, subpixel, subpixel_device
from cprfa_jax.decode.pixel import (
  MATCH_DIST,
  PnccGrid,
  build_pncc_grid,
  build_pncc_tree,
)

METHODS = ("pixel", "subpixel")   # --config.cpr.decode: the paper's pixel mean, or sub-pixel


def check_method(method: str) -> None:
  if method not in METHODS:
    raise ValueError(f"--config.cpr.decode={method!r}: use one of {', '.join(METHODS)}")


def decode_host(method: str, dafi_BxHxWx3, mask_BxHxW, tree, match_dist: float):
  """Every vertex's decoded pixel position (B, V, 2) and detection flag (B, V), on the host, one
  image at a time: "pixel" is the paper's (`pixel.decode_dafi_kdtree`, the mean of the pixels
  matched to a vertex), "subpixel" `subpixel.decode_dafi_subpixel` (the vertex's code located in
  the interpolated PNCC field). `tree`: `build_pncc_tree` of the model's codes (`tree.data`)."""
  check_method(method)
  if method == "subpixel":
    out = [subpixel.decode_dafi_subpixel(d, m, tree.data, None, match_dist)
           for d, m in zip(dafi_BxHxWx3, mask_BxHxW)]
  else:
    all_v = np.arange(tree.n)
    out = [pixel.decode_dafi_kdtree(d, m, tree, all_v, match_dist)
           for d, m in zip(dafi_BxHxWx3, mask_BxHxW)]
  return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])


def decode_device(method: str, dafi_BxHxWx3, mask_BxHxW, grid: PnccGrid, pncc_Vx3,
                  match_dist: float):
  """`decode_host`'s contract in pure JAX (jit / vmap-able, inside a larger jitted function):
  "pixel" by the uniform PNCC grid (`pixel.decode_all_grid`, equal to the KD-tree but for exact
  float ties), "subpixel" by `subpixel_device.decode_all_subpixel`."""
  check_method(method)
  if method == "subpixel":
    return jax.vmap(subpixel_device.decode_all_subpixel, in_axes=(0, 0, None, None))(
        dafi_BxHxWx3, mask_BxHxW, pncc_Vx3, match_dist)
  return jax.vmap(pixel.decode_all_grid, in_axes=(0, 0, None))(dafi_BxHxWx3, mask_BxHxW, grid)
