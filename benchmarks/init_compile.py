"""The cost of a stage's first parameters: each training stage's init (the loop's: `init_fn` on
a batch of zeros, jitted) compiled at XLA's default optimisation level and as
`nets.initialise` compiles it (level 2 on the CPU), with the compile seconds of each and whether
the two give the same parameters bit for bit. Prints JSON.

    python benchmarks/init_compile.py --config smoke [--stages dafi,landmarks,cpr,cpr_h,capu]

Run without the persistent compilation cache (`JAX_COMPILATION_CACHE_DIR` unset): a cached
executable would time a load, not a compile.
"""

import argparse
import importlib
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # for `configs`

import jax  # noqa: E402
import numpy as np  # noqa: E402

from _random_pipeline import random_selection, regressor_params, zero_observations  # noqa: E402
from cprfa_jax import mm, workdirs  # noqa: E402
from cprfa_jax.nets import initialise  # noqa: E402
from cprfa_jax.report import provenance  # noqa: E402
from cprfa_jax.train.stages import dafi, landmarks, regressors  # noqa: E402


def stage_init(config, model3d, sel, layout, stage):
  """(init_fn, host batch of zeros at the stage's training shapes)."""
  view = workdirs.stage_config(config, stage)
  b, s = view.train.batch_size, view.data.image_size
  if stage in ("dafi", "landmarks"):
    init_fn, _ = (dafi if stage == "dafi" else landmarks).stage_fns(view)
    return init_fn, {"image": np.zeros((b, s, s, 3), np.uint8)}
  frozen = (regressor_params(config, model3d, "cpr_h", sel, layout)["stages_round1"]
            if stage == "capu" else None)
  init_fn, _ = regressors.stage_fns(view, model3d, stage, sel, layout, frozen)
  batch = zero_observations(model3d, b)
  batch["alpha"] = np.zeros((b, model3d.num_id + model3d.num_exp), np.float32)
  batch["pose"] = np.zeros((b, 6), np.float32)
  return init_fn, batch


def timed_compile(lowered, options):
  t0 = time.perf_counter()
  compiled = lowered.compile(compiler_options=options)
  return compiled, time.perf_counter() - t0


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--config", default="smoke", help="a module of configs/")
  ap.add_argument("--stages", default="dafi,landmarks,cpr,cpr_h,capu")
  args = ap.parse_args(argv)
  config = importlib.import_module(f"configs.{args.config}").get_config()
  model3d = mm.load_model(config.model)
  sel, layout = random_selection(config, model3d)
  rng = jax.random.PRNGKey(config.seed)
  options = initialise.compiler_options(jax.default_backend())
  out = {"benchmark": "init_compile", "config": args.config, "model": config.model,
         "backend": jax.default_backend(), "initialise_options": options, "stages": {}}
  for stage in args.stages.split(","):
    init_fn, batch = stage_init(config, model3d, sel, layout, stage)
    lowered = jax.jit(init_fn).lower(rng, batch)
    # The cheaper level first: a kernel XLA kept from the first compile cannot favour it.
    cheap, cheap_s = timed_compile(lowered, options)
    default, default_s = timed_compile(lowered, {})
    a, b = default(rng, batch), cheap(rng, batch)
    same = all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    out["stages"][stage] = {"leaves": len(jax.tree.leaves(a)),
                            "default_compile_s": round(default_s, 2),
                            "initialise_compile_s": round(cheap_s, 2),
                            "speedup": round(default_s / cheap_s, 2), "same_params": same}
    print(f"{stage}: {out['stages'][stage]}", file=sys.stderr, flush=True)
  out["environment"] = provenance.environment()
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
