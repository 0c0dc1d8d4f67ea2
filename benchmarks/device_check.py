"""What a user asks of an accelerator, in one short run (issue 23): prints one JSON object with

* the HS-U-Net's train steps/s at the paper's sizes (256 px, configs/paper.py's widths) at batch
  4 (§3.2) and 32;
* the regressors' (CPR-H, CAPU: §2.3-2.5) train steps/s at batch 1 (§3.2) and 32, with C = 512,
  q = 3 and a random 53,215-vertex model (the BFM's size, which cannot be shipped);
* the predictor's latency at batch 1 and throughput at batch 32, at the paper's sizes and at the
  quickstart's (64 px, C = 64: the sizes `predict` runs from a quickstart workdir; no trained
  model ships yet);
* each step's compiled memory (XLA's memory analysis: arguments + outputs + temporaries), the
  device's peak memory where the backend reports it (GPU, TPU) or the process's peak RSS, the
  compile time of each function, and the versions and device it ran on.

Weights are random (speed does not depend on them); every step runs on data already on the
device, so what is timed is the device's work, not the data pipeline's. Each timing runs steps
until `--seconds` have passed (at least 2 steps after a warm-up step that compiles).

    bash benchmarks/device_check.sh              # on the accelerator host (install + this)
    python benchmarks/device_check.py --dry_run  # tiny sizes on the CPU in seconds (the tests)
"""

import argparse
import json
import os
import pathlib
import platform
import resource
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # for `configs`

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from _random_pipeline import (random_like, random_predictor, random_selection,  # noqa: E402
                              regressor_params, zero_observations)
from _timing import compiled_mib  # noqa: E402
from configs import paper, quickstart, tiny  # noqa: E402
from cprfa_jax import mm, workdirs  # noqa: E402
from cprfa_jax.report import provenance  # noqa: E402
from cprfa_jax.train import loop  # noqa: E402
from cprfa_jax.train.stages import dafi, regressors  # noqa: E402

BFM_VERTICES = 53_215   # the 3DDFA BFM's vertex count (mm.bfm), as a random synthetic model

# name -> (config, model, U-Net batches, regressor stages, their batches, predictor batches)
PLANS = {
    "paper": (paper.get_config, f"synthetic:{BFM_VERTICES}", (4, 32), ("cpr_h", "capu"), (1, 32),
              (1, 32)),
    "quickstart": (quickstart.get_config, "synthetic", (), (), (), (1, 32)),
}
DRY_RUN = {   # the same code on the tiny test sizes, on a CPU
    # A regressor's train step compiles for ~30 s on 2 CPU cores: the dry run compiles one, at
    # one batch: CAPU's, whose network holds CPR-H's (round 1, frozen) and round 2.
    "tiny": (tiny.get_config, "synthetic:2000", (2, 4), ("capu",), (1,), (1, 2)),
}


def timed(step, seconds: float, min_steps: int = 2) -> dict:
  """Run `step()` (which blocks on its result) once to warm up, then until `seconds` have
  passed: {"first_call_s", "steps", "steps_per_s"}."""
  t0 = time.perf_counter()
  step()
  first = time.perf_counter() - t0
  n, t0 = 0, time.perf_counter()
  while n < min_steps or time.perf_counter() - t0 < seconds:
    step()
    n += 1
  return {"first_call_s": round(first, 3), "steps": n,
          "steps_per_s": round(n / (time.perf_counter() - t0), 3)}


def compile_once(jitted, *args):
  """(compiled function, compile seconds, XLA's memory analysis in MiB: arguments + outputs +
  temporaries, None where the backend has none). Compiled once: a later `jitted(...)` call
  would compile again, so the caller calls the returned function."""
  t0 = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  return compiled, round(time.perf_counter() - t0, 2), compiled_mib(compiled)


def _train_case(view, init_fn, loss_fn, batch, seconds) -> dict:
  """Steps/s of the loop's own train step (`loop.make_train_step`: clipped Adam) on `batch`."""
  tx = loop.make_optimizer(view.optim, view.train.num_steps)

  params = random_like(init_fn, jax.random.PRNGKey(0), batch)
  state = {"s": loop.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                                opt_state=tx.init(params), rng=jax.random.PRNGKey(1))}
  batch = jax.device_put(batch)
  step, compile_s, mib = compile_once(
      jax.jit(loop.make_train_step(loss_fn, tx), donate_argnums=(0,)), state["s"], batch)

  def one():
    state["s"], state["metrics"] = step(state["s"], batch)
    jax.block_until_ready(state["metrics"]["loss"])

  out = timed(one, seconds)
  loss = float(jax.device_get(state["metrics"]["loss"]))
  return dict(out, compile_s=compile_s, compiled_mib=mib, finite_loss=bool(np.isfinite(loss)))


def unet_train(config, model3d, batch_size, seconds) -> dict:
  del model3d
  view = workdirs.stage_config(config, "dafi")
  s = view.data.image_size
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 256, (batch_size, s, s, 3), np.uint8),
           "dafi": rng.random((batch_size, s, s, 3), np.float32),
           "mask": rng.random((batch_size, s, s)) < 0.5}
  return _train_case(view, *dafi.stage_fns(view), batch, seconds)


def regressor_train(config, model3d, stage, batch_size, seconds) -> dict:
  view = workdirs.stage_config(config, stage)
  sel, layout = random_selection(config, model3d)
  frozen = (regressor_params(config, model3d, "cpr_h", sel, layout)["stages_round1"]
            if stage == "capu" else None)
  init_fn, loss_fn = regressors.stage_fns(view, model3d, stage, sel, layout, frozen)
  rng = np.random.default_rng(1)
  batch = zero_observations(model3d, batch_size)
  batch["y_all"] = rng.uniform(-0.5, 0.5, batch["y_all"].shape).astype(np.float32)
  batch["y_lm"] = rng.uniform(-0.5, 0.5, batch["y_lm"].shape).astype(np.float32)
  batch["alpha"] = np.zeros((batch_size, model3d.num_id + model3d.num_exp), np.float32)
  batch["pose"] = np.tile(np.float32([0.0, 0.0, 0.0, 1.0, 0.0, 0.0]), (batch_size, 1))
  return _train_case(view, init_fn, loss_fn, batch, seconds)


def predict(pred, batch_size, seconds) -> dict:
  """The public `Predictor.fit_crops` (host arrays in, host arrays out) on `batch_size` crops:
  per call seconds (latency at batch 1) and faces/s; the first call compiles."""
  s = pred.size
  crops = np.random.default_rng(2).integers(0, 256, (batch_size, s, s, 3), np.uint8)
  k, b = np.ones(batch_size, np.float32), np.zeros((batch_size, 2), np.float32)
  out = timed(lambda: pred.fit_crops(crops, k, b), seconds)
  return dict(out, seconds_per_call=round(1 / out["steps_per_s"], 5),
              faces_per_s=round(batch_size * out["steps_per_s"], 2))


def peak_memory() -> dict:
  stats = jax.local_devices()[0].memory_stats() or {}
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10   # KiB on Linux
  return {"device_peak_mib": (round(stats["peak_bytes_in_use"] / 2**20, 1)
                              if "peak_bytes_in_use" in stats else None),
          "device_limit_mib": (round(stats["bytes_limit"] / 2**20, 1)
                               if "bytes_limit" in stats else None),
          "process_peak_rss_mib": round(rss, 1)}


def run(plans, seconds, log) -> dict:
  out = {"benchmark": "device_check"}
  for name, (get_config, model_spec, unet_b, stages, reg_b, pred_b) in plans.items():
    config = get_config()
    config.model = model_spec
    model3d = mm.load_model(model_spec)
    res = {"image_size": config.data.image_size, "C": config.cpr.num_selected,
           "q": config.cpr.num_stages, "vertices": model3d.num_vertices,
           "unet_widths": list(config.unet.widths)}
    for b in unet_b:
      log(f"{name}: U-Net train step, batch {b}")
      res[f"unet_train_batch{b}"] = unet_train(config, model3d, b, seconds)
    for stage in stages:
      for b in reg_b:
        log(f"{name}: {stage} train step, batch {b}")
        res[f"{stage}_train_batch{b}"] = regressor_train(config, model3d, stage, b, seconds)
    # One predictor whose batches hold the largest case whole (it pads a call's faces to a
    # power of two up to max_batch, and splits larger calls).
    pred = random_predictor(config, model3d, max_batch=max(pred_b)) if pred_b else None
    for b in pred_b:
      log(f"{name}: predictor, batch {b}")
      res[f"predict_batch{b}"] = predict(pred, b, seconds)
    out[name] = res
  out["memory"] = peak_memory()
  env = provenance.environment()
  out["environment"] = dict(env, device_kind=jax.devices()[0].device_kind)
  return out


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--dry_run", action="store_true",
                  help="the tiny test sizes instead of the paper's and the quickstart's")
  ap.add_argument("--seconds", type=float, default=None,
                  help="time each case for this long after its compile (default 3; 0.2 dry)")
  ap.add_argument("--out", default=None, help="also write the JSON to this file")
  args = ap.parse_args(argv)
  seconds = args.seconds if args.seconds is not None else (0.2 if args.dry_run else 3.0)
  t0 = time.time()
  log = lambda m: print(f"[device_check {time.time() - t0:6.1f} s] {m}", file=sys.stderr,
                        flush=True)
  log(f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({jax.default_backend()}), "
      f"{platform.machine()}, {os.cpu_count()} CPUs")
  res = run(DRY_RUN if args.dry_run else PLANS, seconds, log)
  res["dry_run"], res["seconds_per_case"], res["wall_s"] = args.dry_run, seconds, round(
      time.time() - t0, 1)
  text = json.dumps(res, indent=1)
  if args.out:
    pathlib.Path(args.out).write_text(text + "\n")
  print(text)


if __name__ == "__main__":
  main()
