"""Image-to-parameters speed of the full CPRFA pipeline on this machine, in one run:

* the predictor (`cprfa_jax.predict`: one jitted crop-to-face function, DAFI decoding on the
  device, the observation step training and evaluate.py share) against the host-decoding path
  (jitted networks, host KD-tree decoding of every vertex by `observe.host_observations`, the
  jitted regressor; NumPy between them: evaluate.py's path until it moved to the device), at batch 1 (latency) and at
  --throughput_batch;
* per stage at batch 1: U-Net (DAFI + mask), decoding (device grid and host KD-tree, on the
  true DAFI of a rendered face so it decodes a face's worth of pixels), the landmark network,
  round 1 (CPR-H) and round 2 (CAPU), each with its XLA memory (arguments + outputs +
  temporaries, `Compiled.memory_analysis`); and the process's peak RSS.

The paper's 0.9 s per image (GTX 1080Ti, §3.5) is printed beside it. Weights from --workdir
(a trained pipeline) or random (the speed does not depend on them). Prints one JSON object.

    python benchmarks/fit_speed.py [--config configs/quickstart.py] [--workdir runs/quickstart]
    # the paper's sizes (256 px, C = 512, N = 256, q = 3) with a 53k-vertex random model:
    python benchmarks/fit_speed.py --config configs/paper.py --model synthetic:53215 \
        --throughput_batch 0
"""

import argparse
import json
import os
import platform
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from _random_pipeline import random_predictor  # noqa: E402
from _timing import compiled_mib, median_time  # noqa: E402
from cprfa_jax import cli, decode, mm, observe  # noqa: E402
from cprfa_jax.data import sampler  # noqa: E402
from cprfa_jax.data.datasets import set_config  # noqa: E402
from cprfa_jax.decode import pixel  # noqa: E402
from cprfa_jax.geometry import projection  # noqa: E402
from cprfa_jax.nets import build
from cprfa_jax.predict.predictor import Predictor  # noqa: E402

PAPER_S_PER_IMAGE = 0.9
STAGE = "capu"


def eval_path(pred, images):
  """The host-decoding route for one batch (evaluate.py's until it observed on the device):
  U-Net, host KD-tree decoding, landmark network, regressor (`build.regressor`)."""
  config, model3d, w = pred.config, pred.model3d, pred.weights
  unet, lmnet = build.unet(config), build.landmarks(config)
  reg = build.regressor(config, model3d, STAGE)
  tree = pixel.build_pncc_tree(model3d.pncc_Vx3)
  hw = images.shape[1:3]
  sel = np.asarray(w.selected_C)
  keys = build.inference_keys(config.seed, len(images))

  def run():
    d, m = unet(w.unet, images)
    lm = np.asarray(lmnet(w.landmarks, images)[0])
    obs = observe.host_observations(np.asarray(d), np.asarray(m) > 0.5, lm, tree,
                               config.cpr.match_dist, hw)
    out = reg(w.regressor, model3d, w.selected_C, w.layout_3xN, observe.to_observations(obs, sel), keys)
    return jax.block_until_ready(out["pose"])

  return run


def predictor_path(pred, images):
  k, b = np.ones(len(images), np.float32), np.zeros((len(images), 2), np.float32)
  lm, given = np.zeros((len(images), 68, 2), np.float32), np.zeros(len(images), bool)
  return lambda: jax.block_until_ready(pred._fit(pred.weights, images, k, b, lm, given)["pose"])  # pylint: disable=protected-access


def _mib(fn, *args):
  return compiled_mib(jax.jit(fn).lower(*args).compile())


def per_stage(pred, images, true_dafi, true_mask, repeats):
  """Seconds and MiB of each stage at the batch of `images`."""
  config, model3d, w = pred.config, pred.model3d, pred.weights
  unet = lambda p, x: build.unet_apply(build.unet_network(config), p, x)
  lmnet = lambda p, x: build.landmarks_apply(build.landmarks_network(config), p, x)[0]
  grid = jax.vmap(pixel.decode_all_grid, in_axes=(0, 0, None))
  tree = pixel.build_pncc_tree(model3d.pncc_Vx3)
  hw = images.shape[1:3]
  px, det = grid(jnp.asarray(true_dafi), jnp.asarray(true_mask), w.grid)
  y_all = projection.from_pixels(px, hw)
  obs = observe.to_observations({"y_all": y_all, "det_all": det,
                             "y_lm": jnp.zeros((len(images), 68, 2)),
                             "det_lm": jnp.ones((len(images), 68), bool)}, w.selected_C)
  keys = build.inference_keys(config.seed, len(images))
  round1_net = build.regressor_network(config, model3d, "cpr_h")
  r1_params = {"stages_round1": w.regressor["stages_round1"]}
  round1 = lambda p, o: round1_net.apply({"params": p}, model3d, w.selected_C, w.layout_3xN, o)
  full = lambda p, o: build.regressor_apply(config, model3d, STAGE, p, w.selected_C,
                                               w.layout_3xN, o, keys)
  jit = {k: jax.jit(f) for k, f in (("unet", unet), ("landmarks", lmnet), ("decode", grid),
                                     ("round1", round1), ("full", full))}
  block = jax.block_until_ready
  t = {"unet": median_time(lambda: block(jit["unet"](w.unet, images)), repeats),
       "decode_device": median_time(lambda: block(jit["decode"](true_dafi, true_mask, w.grid)), repeats),
       "decode_kdtree": median_time(lambda: decode.decode_host("pixel", true_dafi, true_mask, tree,
                                                               config.cpr.match_dist), repeats),
       "landmarks": median_time(lambda: block(jit["landmarks"](w.landmarks, images)), repeats),
       "round1": median_time(lambda: block(jit["round1"](r1_params, obs)), repeats)}
  t["round2"] = max(median_time(lambda: block(jit["full"](w.regressor, obs)), repeats) - t["round1"], 0.0)
  mem = {"unet": _mib(unet, w.unet, images), "landmarks": _mib(lmnet, w.landmarks, images),
         "decode_device": _mib(grid, true_dafi, true_mask, w.grid),
         "round1": _mib(round1, r1_params, obs), "rounds_1_2": _mib(full, w.regressor, obs)}
  k, b = np.ones(len(images), np.float32), np.zeros((len(images), 2), np.float32)
  lm, given = np.zeros((len(images), 68, 2), np.float32), np.zeros(len(images), bool)
  mem["predictor"] = _mib(pred._fit, pred.weights, images, k, b, lm, given)  # pylint: disable=protected-access
  return {k_: round(v, 4) for k_, v in t.items()}, mem


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--config", default="configs/quickstart.py")
  ap.add_argument("--workdir", default="")
  ap.add_argument("--throughput_batch", type=int, default=32)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--model", default="", help="instead of the config's model, e.g. "
                  "synthetic:53215 for a BFM-sized random model when no BFM is at hand")
  args = ap.parse_args()
  config = cli.load_config(args.config)
  if args.model:
    config.model = args.model
  model3d = mm.load_model(config.model)
  size = config.data.image_size
  batch = max(1, args.throughput_batch)
  exs = sampler.generate(model3d, range(batch), set_config("synth-aflw", size), 12345)
  images = np.stack([e["image"] for e in exs])
  true_dafi = np.stack([e["dafi"] for e in exs]).astype(np.float32)
  true_mask = np.stack([e["mask"] for e in exs]).astype(bool)
  pred = (Predictor.from_workdir(config, args.workdir, model3d) if args.workdir
          else random_predictor(config, model3d, STAGE))
  out = {"machine": f"{platform.machine()} {os.cpu_count()} CPU, {jax.devices()[0].platform}",
         "config": args.config, "trained_weights": bool(args.workdir),
         "C": config.cpr.num_selected, "image_size": size,
         "model": f"{model3d.name} V={model3d.num_vertices}", "q": config.cpr.num_stages,
         "grid_capacity": pred.weights.grid.capacity,
         "unet_widths": list(config.unet.widths), "lmnet_widths": list(config.lmnet.widths),
         "cpr_width": config.cpr.width, "paper_s_per_image_gtx1080ti": PAPER_S_PER_IMAGE}
  batches = [1] + ([args.throughput_batch] if args.throughput_batch > 1 else [])
  for b in batches:
    for name, path in (("predictor", predictor_path), ("eval_path", eval_path)):
      t0 = time.time()
      s = median_time(path(pred, images[:b]), args.repeats)
      out[f"{name}_batch{b}_s_per_image"] = round(s / b, 5)
      print(f"{name} batch {b}: {s / b:.4f} s/image ({time.time() - t0:.0f} s with compile)",
            file=sys.stderr, flush=True)
    out[f"predictor_speedup_batch{b}"] = round(out[f"eval_path_batch{b}_s_per_image"]
                                               / out[f"predictor_batch{b}_s_per_image"], 2)
  stages, mem = per_stage(pred, images[:1], true_dafi[:1], true_mask[:1], args.repeats)
  out["stages_batch1_s"] = stages
  out["stages_batch1_mib"] = mem
  out["speedup_vs_paper_latency"] = round(PAPER_S_PER_IMAGE / out["predictor_batch1_s_per_image"], 2)
  out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10, 1)
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
