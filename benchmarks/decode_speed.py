"""DAFI decoding (§2.1) on the device against the host KD-tree, in one run: the choice issue 11's
one-jit image-to-face function has to make.

* kdtree: `dafi.decode_dafi_kdtree` on the host (scipy cKDTree over the V PNCC codes, queried
  only at mask pixels), what evaluation and the regressor stages use today;
* device: `dafi.decode_dafi` jitted (brute-force nearest code for every pixel, chunked matmuls,
  then a segment mean), which can sit inside one jitted function with no host round trip.

Input: the true DAFI and mask of rendered faces at each size (a face's worth of mask pixels);
every vertex decoded (the regressors need all of them for Eq. 6). Batch 1 latency, median of
--repeats; both outputs are checked equal. Prints one JSON object.

    python benchmarks/decode_speed.py [--sizes 64,128,256] [--vertices 6083,53215]
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
from cprfa_jax import dafi, mm  # noqa: E402
from cprfa_jax.data import sampler  # noqa: E402
from cprfa_jax.data.datasets import set_config  # noqa: E402


def one(model3d, size, repeats):
  ex, = sampler.generate(model3d, [0], set_config("synth-aflw", size), 12345)
  image_dafi, mask = ex["dafi"], ex["mask"]
  pncc = np.asarray(model3d.pncc_Vx3, np.float32)
  subset = np.arange(model3d.num_vertices)
  tree = dafi.build_pncc_tree(pncc)
  device = jax.jit(dafi.decode_dafi)
  pos_d, det_d = jax.block_until_ready(device(image_dafi, mask, pncc, subset))
  pos_k, det_k = dafi.decode_dafi_kdtree(image_dafi, mask, tree, subset)
  same_detected = float(np.mean(np.asarray(det_d) == det_k))
  both = np.asarray(det_d) & det_k
  max_px = float(np.abs(np.asarray(pos_d)[both] - pos_k[both]).max()) if both.any() else 0.0
  t_dev = median_time(lambda: jax.block_until_ready(device(image_dafi, mask, pncc, subset)),
                      repeats)
  t_kd = median_time(lambda: dafi.decode_dafi_kdtree(image_dafi, mask, tree, subset), repeats)
  return {"image_size": size, "V": model3d.num_vertices, "mask_pixels": int(mask.sum()),
          "kdtree_s": round(t_kd, 4), "device_s": round(t_dev, 4),
          "device_over_kdtree": round(t_dev / max(t_kd, 1e-9), 2),
          "detected_agree": round(same_detected, 5), "max_position_diff_px": round(max_px, 5)}


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--sizes", default="64,128,256")
  ap.add_argument("--vertices", default="6083,53215")
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
