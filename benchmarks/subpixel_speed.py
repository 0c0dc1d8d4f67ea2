"""Sub-pixel DAFI decoding (issue 12) against the paper's pixel decoding, in one run: what
`--config.cpr.decode=subpixel` costs per image and what it buys.

* pixel: `pixel.decode_dafi_kdtree` (host, the paper's §2.1: a vertex at the mean of the pixels
  whose code is nearest to it);
* subpixel: `subpixel.decode_dafi_subpixel` (host: each vertex's code located in the PNCC
  field by a local affine fit), what training and evaluate.py use with the option;
* subpixel_jax: `subpixel_device.decode_all_subpixel` jitted (the predictor's), batch 1.

Input: one rendered face's true DAFI and mask per size (synth-aflw), every vertex decoded.
Median of --repeats. Accuracy against the vertices' true projections: the fraction detected
and their median / 95th-percentile error in pixels. Prints one JSON object.

    python benchmarks/subpixel_speed.py [--sizes 64,128,256] [--vertices 6083]
"""

import argparse
import json
import os
import platform
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from _timing import median_time  # noqa: E402
from cprfa_jax import geometry, mm  # noqa: E402
from cprfa_jax.data import sampler  # noqa: E402
from cprfa_jax.data.datasets import set_config  # noqa: E402
from cprfa_jax.decode import pixel, subpixel, subpixel_device
from cprfa_jax.mm.model import shape  # noqa: E402


def accuracy(pos, det, truth):
  pos, det = np.asarray(pos), np.asarray(det)
  err = np.linalg.norm(pos[det] - truth[det], axis=-1)
  return {"detected": round(float(det.mean()), 4),
          "median_px": round(float(np.median(err)), 4) if err.size else None,
          "p95_px": round(float(np.percentile(err, 95)), 4) if err.size else None}


def one(model3d, size, repeats):
  ex, = sampler.generate(model3d, [0], set_config("synth-aflw", size), 12345)
  image_dafi, mask = np.asarray(ex["dafi"], np.float32), np.asarray(ex["mask"])
  verts = shape(model3d, ex["alpha_id"], ex["alpha_exp"])
  truth = np.asarray(geometry.to_pixels(geometry.project(verts, ex["pose"]), (size, size)))
  pncc = np.asarray(model3d.pncc_Vx3, np.float32)
  tree = pixel.build_pncc_tree(pncc)
  subset = np.arange(model3d.num_vertices)
  r = {"image_size": size, "V": model3d.num_vertices, "mask_pixels": int(mask.sum())}
  fns = {
      "pixel": lambda: pixel.decode_dafi_kdtree(image_dafi, mask, tree, subset),
      "subpixel": lambda: subpixel.decode_dafi_subpixel(image_dafi, mask, pncc),
      "subpixel_jax": lambda: jax.block_until_ready(
          subpixel_device.decode_all_subpixel(image_dafi, mask, pncc)),
  }
  for name, fn in fns.items():
    out = fn()                                   # compiles the jitted one
    r[f"{name}_s"] = round(median_time(fn, repeats), 4)
    r[name] = accuracy(*out, truth)
  r["subpixel_over_pixel"] = round(r["subpixel_s"] / max(r["pixel_s"], 1e-9), 1)
  return r


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--sizes", default="64,128,256")
  ap.add_argument("--vertices", default="6083")
  ap.add_argument("--repeats", type=int, default=5)
  args = ap.parse_args()
  out = {"machine": f"{platform.machine()} {os.cpu_count()} CPU, {jax.devices()[0].platform}",
         "runs": []}
  for v in (int(x) for x in args.vertices.split(",")):
    model3d = mm.load_model(f"synthetic:{v}")
    for size in (int(x) for x in args.sizes.split(",")):
      r = one(model3d, size, args.repeats)
      print(r, file=sys.stderr, flush=True)
      out["runs"].append(r)
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
