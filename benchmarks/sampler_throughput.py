"""Examples per second of the whole synthetic sampler (`data.sampler.generate`: shapes, looks,
render, background, occluders, photometric noise, ground truth), face-only renders against
renders with a head around the face (`SamplerConfig.head`, issue 21), in one run.

Timed per call of `generate` on --batch seeds (the data sets render chunks of 64), compilation
excluded (one warm-up call each); seeds differ between calls, as in training. Prints one JSON
object. The aim (issue 21): at least 100 examples/s at 128 px on the 2-core CPU.

    python benchmarks/sampler_throughput.py [--image_size 128] [--batch 64] [--repeats 3]
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
from cprfa_jax.data import datasets, sampler  # noqa: E402
from cprfa_jax.mm import load_model  # noqa: E402


def _rate(model, cfg, batch, repeats):
  sampler.generate(model, range(batch), cfg, 0)           # compile
  times = []
  for r in range(repeats):
    seeds = range((r + 1) * batch, (r + 2) * batch)
    t0 = time.perf_counter()
    sampler.generate(model, seeds, cfg, 0)
    times.append(time.perf_counter() - t0)
  return batch / float(np.median(times))


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--image_size", type=int, default=128)
  ap.add_argument("--batch", type=int, default=64)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--model", default="synthetic")
  a = ap.parse_args()
  model = load_model(a.model)
  out = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
         "jax": jax.__version__, "model": f"{model.name} ({model.num_vertices} vertices)",
         "image_size": a.image_size, "batch": a.batch}
  for name, over in (("face_only", {}), ("head", {"head": True})):
    cfg = datasets.set_config("train", a.image_size, **over)
    out[f"{name}_examples_per_s"] = round(_rate(model, cfg, a.batch, a.repeats), 1)
  out["head_over_face_only"] = round(out["head_examples_per_s"] / out["face_only_examples_per_s"], 3)
  print(json.dumps(out))


if __name__ == "__main__":
  main()
