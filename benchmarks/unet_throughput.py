"""HS-U-Net training throughput (images/s) on this machine: forward only, the jitted train step
on a batch already in memory, and the same step fed by the synthetic TrainStream (rendering in a
background thread), in one run. The last two compare an idealised input pipeline with the real
one: their ratio is the cost of making data on the fly.

    python benchmarks/unet_throughput.py [--sizes 64 256] [--steps 5]
"""

import argparse
import json
import os
import pathlib
import platform
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # for `configs`

import jax
import numpy as np

from configs import quickstart
from cprfa_jax import mm
from cprfa_jax.data import datasets
from cprfa_jax.nets import build
from cprfa_jax.train.stages.dafi import hs_unet_loss
from cprfa_jax.train import loop
from cprfa_jax.train.stages import dafi


def bench(size, batch, steps, model3d):
  config = quickstart.get_config()
  config.data.image_size = size
  net = build.unet_network(config)
  stream = datasets.TrainStream(model3d, batch, size)
  first = next(stream)
  params = net.init(jax.random.PRNGKey(0), build.preprocess(first["image"][:1]))["params"]
  tx = loop.make_optimizer(config.optim, 1000)
  state = loop.TrainState(step=np.int32(0), params=params, opt_state=tx.init(params),
                          rng=jax.random.PRNGKey(1))
  loss_fn = lambda p, b, r: hs_unet_loss(net.apply({"params": p}, build.preprocess(b["image"])),
                                         b["dafi"], b["mask"])
  step = jax.jit(loop.make_train_step(loss_fn, tx))
  fwd = jax.jit(lambda p, x: net.apply({"params": p}, build.preprocess(x))[-1][0])
  batch = {k: first[k] for k in dafi.KEYS}

  def timed(fn, n):
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
      fn()
    return batch_imgs * n / (time.perf_counter() - t0)

  batch_imgs = batch["image"].shape[0]
  res = {"forward_images_per_s": timed(lambda: fwd(params, batch["image"]).block_until_ready(), steps)}
  holder = {"state": state}

  def fixed():
    holder["state"], m = step(holder["state"], batch)
    m["loss"].block_until_ready()

  def streamed():
    b = next(stream)
    holder["state"], m = step(holder["state"], {k: b[k] for k in dafi.KEYS})
    m["loss"].block_until_ready()

  res["train_step_fixed_batch_images_per_s"] = timed(fixed, steps)
  res["train_step_streamed_images_per_s"] = timed(streamed, steps)
  res["streamed_over_fixed"] = res["train_step_streamed_images_per_s"] / res["train_step_fixed_batch_images_per_s"]
  stream.close()
  return {k: round(v, 3) for k, v in res.items()}


def main():
  ap = argparse.ArgumentParser(description=__doc__)
  ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
  ap.add_argument("--batch", type=int, default=16)
  ap.add_argument("--steps", type=int, default=5)
  args = ap.parse_args()
  model3d = mm.load_model("synthetic")
  out = {"benchmark": "unet_throughput", "widths": list(quickstart.get_config().unet.widths),
         "batch": args.batch}
  for size in args.sizes:
    out[f"{size}px"] = bench(size, args.batch, args.steps, model3d)
  out.update(jax=jax.__version__, backend=jax.default_backend(), cpus=os.cpu_count(),
             machine=platform.machine())
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
