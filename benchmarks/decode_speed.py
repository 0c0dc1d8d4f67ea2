"""DAFI decoding (§2.1): the device decoders against the host KD-tree, in one run: the choice
issue 11's one-jit image-to-face function has to make.

* kdtree: `pixel.decode_dafi_kdtree` on the host (scipy cKDTree over the V PNCC codes, queried
  only at mask pixels), what evaluation and the regressor stages use today;
* device: `pixel.decode_dafi` jitted (brute-force nearest code for every pixel, chunked matmuls,
  then a segment mean), which can sit inside one jitted function with no host round trip;
* grid: `pixel.decode_all_grid` (jitted; a `build_pncc_grid` uniform grid over the PNCC cube,
  the nearest code among the 27 cells around each mask pixel), also one-jit material.

Input: the true DAFI and mask of rendered faces at each size (a face's worth of mask pixels);
every vertex decoded (the regressors need all of them for Eq. 6). Batch 1 latency, median of
--repeats, and the grid's per-image time in a vmapped batch of --batch copies. Against the
KD-tree: the fraction of mask pixels whose match (vertex, or no match) differs, of vertices
whose detected flag differs, and the largest position difference of vertices both detect.
Prints one JSON object.

    python benchmarks/decode_speed.py [--sizes 64,128,256] [--vertices 6083,53215]
"""

import argparse
import json
import os
import platform
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from _timing import median_time  # noqa: E402
from cprfa_jax import mm  # noqa: E402
from cprfa_jax.data import sampler  # noqa: E402
from cprfa_jax.data.datasets import set_config  # noqa: E402
from cprfa_jax.decode import pixel


def pixel_matches(idx_P, dist_P, max_dist=pixel.MATCH_DIST):
  """Per-pixel outcome: the matched vertex, or -1."""
  return np.where(np.asarray(dist_P) < max_dist, np.asarray(idx_P), -1)


def compare(pos, det, pos_k, det_k):
  pos, det = np.asarray(pos), np.asarray(det)
  both = det & det_k
  max_px = float(np.abs(pos[both] - pos_k[both]).max()) if both.any() else 0.0
  return round(float(np.mean(det != det_k)), 6), round(max_px, 5)


def one(model3d, size, repeats, batch, brute_force):
  ex, = sampler.generate(model3d, [0], set_config("synth-aflw", size), 12345)
  image_dafi, mask = np.asarray(ex["dafi"]), np.asarray(ex["mask"])
  codes = image_dafi[mask]
  pncc = np.asarray(model3d.pncc_Vx3, np.float32)
  subset = np.arange(model3d.num_vertices)
  tree = pixel.build_pncc_tree(pncc)
  t0 = time.perf_counter()
  grid = jax.block_until_ready(pixel.build_pncc_grid(pncc))
  t_build = time.perf_counter() - t0
  r = {"image_size": size, "V": model3d.num_vertices, "mask_pixels": int(mask.sum()),
       "grid_cells_per_axis": grid.cells_per_axis, "grid_capacity": grid.capacity,
       "grid_row_capacity": grid.row_capacity,
       "grid_bytes": int(grid.cell_start.nbytes + grid.sorted_vertex.nbytes),
       "grid_build_s": round(t_build, 4)}

  pos_k, det_k = pixel.decode_dafi_kdtree(image_dafi, mask, tree, subset)
  dist_k, idx_k = tree.query(codes.astype(np.float64), distance_upper_bound=pixel.MATCH_DIST)
  match_k = pixel_matches(idx_k, dist_k)
  r["kdtree_s"] = round(median_time(
      lambda: pixel.decode_dafi_kdtree(image_dafi, mask, tree, subset), repeats), 4)

  grid_fn = jax.jit(pixel.decode_all_grid)
  pos_g, det_g = jax.block_until_ready(grid_fn(image_dafi, mask, grid))
  r["grid_s"] = round(median_time(
      lambda: jax.block_until_ready(grid_fn(image_dafi, mask, grid)), repeats), 4)
  r["grid_over_kdtree"] = round(r["grid_s"] / max(r["kdtree_s"], 1e-9), 2)
  batched = jax.jit(jax.vmap(pixel.decode_all_grid, in_axes=(0, 0, None)))
  images, masks = np.stack([image_dafi] * batch), np.stack([mask] * batch)
  r[f"grid_batch{batch}_s_per_image"] = round(median_time(
      lambda: jax.block_until_ready(batched(images, masks, grid)), repeats) / batch, 4)
  match_g = pixel_matches(*pixel.nearest_vertex_grid(codes, grid))
  r["grid_pixels_differ"] = round(float(np.mean(match_g != match_k)), 6)
  r["grid_detected_differ"], r["grid_max_position_diff_px"] = compare(pos_g, det_g, pos_k, det_k)

  if brute_force:
    device = jax.jit(pixel.decode_dafi)
    pos_d, det_d = jax.block_until_ready(device(image_dafi, mask, pncc, subset))
    r["device_s"] = round(median_time(
        lambda: jax.block_until_ready(device(image_dafi, mask, pncc, subset)), repeats), 4)
    r["device_over_kdtree"] = round(r["device_s"] / max(r["kdtree_s"], 1e-9), 2)
    match_d = pixel_matches(*pixel.nearest_vertex(codes, pncc))
    r["device_pixels_differ"] = round(float(np.mean(match_d != match_k)), 6)
    r["device_detected_differ"], r["device_max_position_diff_px"] = compare(
        pos_d, det_d, pos_k, det_k)
  return r


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--sizes", default="64,128,256")
  ap.add_argument("--vertices", default="6083,53215")
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--batch", type=int, default=8, help="vmapped batch for the grid's throughput")
  ap.add_argument("--no_brute_force", action="store_true",
                  help="skip `decode_dafi` (8 s per image at 256 px and 53k vertices)")
  args = ap.parse_args()
  out = {"machine": f"{platform.machine()} {os.cpu_count()} CPU, {jax.devices()[0].platform}",
         "runs": []}
  for v in (int(x) for x in args.vertices.split(",")):
    model3d = mm.load_model(f"synthetic:{v}")
    for size in (int(x) for x in args.sizes.split(",")):
      r = one(model3d, size, args.repeats, args.batch, not args.no_brute_force)
      print(r, file=sys.stderr, flush=True)
      out["runs"].append(r)
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
