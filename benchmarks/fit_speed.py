"""Image-to-parameters speed of the full CPRFA pipeline on this machine, jitted against the same
pipeline run eagerly (jax.disable_jit), in one run; the paper's 0.9 s per image (GTX 1080Ti,
§3.5) beside it.

Stages timed separately: U-Net (DAFI + mask), decoding (host KD-tree over every vertex),
landmark network (the fusion's input), round 1 (CPR-H: DAFI + landmark CPRs, q stages), round 2
(CAPU: κ-sampled path errors and β). Latency at batch 1, throughput at batch 32. Networks at the
quickstart config's sizes; weights from --workdir if given (a trained pipeline), else random
(the speed does not depend on the weights; decoding then reads the true DAFI so it decodes a
realistic number of pixels). Prints one JSON object, with each jitted stage's XLA memory
(arguments + outputs + temporaries, `Compiled.memory_analysis`) and the process's peak RSS.

    python benchmarks/fit_speed.py [--config configs/quickstart.py] [--workdir runs/quickstart]
    # the paper's sizes (256 px, C = 512, N = 256, q = 3) with a 53k-vertex random model:
    python benchmarks/fit_speed.py --config configs/paper.py --model synthetic:53215 \
        --throughput_batch 0
"""

import argparse
import contextlib
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

from _timing import median_time  # noqa: E402
from cprfa_jax import mm  # noqa: E402
from cprfa_jax import dafi as dafi_lib  # noqa: E402
from cprfa_jax.data import sampler  # noqa: E402
from cprfa_jax.data.datasets import set_config  # noqa: E402
from cprfa_jax.models.hs_unet import HSUNet  # noqa: E402
from cprfa_jax.models.landmark_net import LandmarkNet, soft_argmax  # noqa: E402
from cprfa_jax.stages import common, dafi, fit, observe  # noqa: E402
from cprfa_jax.stages.landmarks import STRIDE  # noqa: E402

PAPER_S_PER_IMAGE = 0.9


def load_config(path):
  import importlib.util
  spec = importlib.util.spec_from_file_location("cfg", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config()


def build(config, model3d, workdir, batch):
  """Everything a fit needs, and one function per stage."""
  size = config.data.image_size
  exs = sampler.generate(model3d, range(batch), set_config("synth-aflw", size), 12345)
  images = np.stack([e["image"] for e in exs])
  true = (np.stack([e["dafi"] for e in exs]), np.stack([e["mask"] for e in exs]))
  unet, lmnet = HSUNet(tuple(config.unet.widths)), LandmarkNet(tuple(config.lmnet.widths))
  x = dafi.preprocess(images)
  if workdir:
    pu, pl = (common.params_of(config, workdir, s) for s in ("dafi", "landmarks"))
    pc = common.params_of(config, workdir, "capu")
    pc = {"stages_round1": common.params_of(config, workdir, "cpr_h")["stages_round1"], **pc}
    with np.load(common.selection_file(workdir)) as f:
      sel, layout = f["selected"], f["layout"]
  else:
    pu = unet.init(jax.random.PRNGKey(0), x[:1])["params"]
    pl = lmnet.init(jax.random.PRNGKey(1), x[:1])["params"]
    rng = np.random.default_rng(0)
    from cprfa_jax import cpr
    left, right = cpr.select_vertices(rng.random(model3d.num_vertices), np.ones(model3d.num_vertices),
                                      np.asarray(model3d.mean_Vx3)[:, 0], config.eval.num_selected)
    sel, layout = cpr.selected_vertices(left, right), cpr.cpr_layout(config.eval.num_selected)
    pc = None
  net_h, net_c = fit.regressor(config, model3d, "cpr_h"), fit.regressor(config, model3d, "capu")
  tree = dafi_lib.build_pncc_tree(model3d.pncc_Vx3)
  hw = (size, size)
  sel_j, layout_j = jnp.asarray(sel), jnp.asarray(layout)
  key = jax.random.PRNGKey(0)

  def unet_fn(p, x):
    d, logits = unet.apply({"params": p}, x)[-1]
    return d, jax.nn.sigmoid(logits)

  def lm_fn(p, x):
    return soft_argmax(lmnet.apply({"params": p}, x), STRIDE)[0]

  def round1_fn(p, obs):
    return net_h.apply({"params": {"stages_round1": p["stages_round1"]}}, model3d, sel_j, layout_j, obs)

  def full_fn(p, obs):
    return net_c.apply({"params": p}, model3d, sel_j, layout_j, obs, key)

  obs0 = observe.observations(*true, np.zeros((batch, 68, 2), np.float32), tree,
                              config.cpr.match_dist, hw)
  o = fit.to_observations(obs0, sel)
  if pc is None:
    pc = net_c.init(jax.random.PRNGKey(2), model3d, sel_j, layout_j, o, key)["params"]
  return dict(x=x, true=true, pu=pu, pl=pl, pc=pc, tree=tree, hw=hw, sel=sel, obs=o,
              fns=dict(unet=unet_fn, landmarks=lm_fn, round1=round1_fn, full=full_fn),
              trained_unet=bool(workdir), config=config)


def stage_memory(b) -> dict:
  """MiB each jitted stage needs on the device: its arguments, outputs and XLA temporaries."""
  obs = b["obs"]._replace(y_lm=jnp.zeros((len(b["x"]), 68, 2)),
                          det_lm=jnp.ones((len(b["x"]), 68), bool))
  args = {"unet": (b["pu"], b["x"]), "landmarks": (b["pl"], b["x"]), "round1": (b["pc"], obs),
          "full": (b["pc"], obs)}
  out = {}
  for k, a in args.items():
    m = jax.jit(b["fns"][k]).lower(*a).compile().memory_analysis()
    if m is None:
      return {}
    total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
    out[k] = round(total / 2**20, 1)
  return out


def time_stages(b, jit: bool, repeats: int):
  f = {k: (jax.jit(v) if jit else v) for k, v in b["fns"].items()}
  ctx = contextlib.nullcontext() if jit else jax.disable_jit()
  block = jax.block_until_ready
  with ctx:
    d, m = f["unet"](b["pu"], b["x"])
    dafi_np, mask_np = (np.asarray(d), np.asarray(m) > 0.5) if b["trained_unet"] else b["true"]
    lm = np.asarray(f["landmarks"](b["pl"], b["x"]))
    t = {}
    t["unet"] = median_time(lambda: block(f["unet"](b["pu"], b["x"])), repeats)
    t["decode"] = median_time(lambda: observe.observations(
        dafi_np, mask_np, lm, b["tree"], b["config"].cpr.match_dist, b["hw"]), repeats)
    t["landmarks"] = median_time(lambda: block(f["landmarks"](b["pl"], b["x"])), repeats)
    obs = b["obs"]._replace(y_lm=jnp.zeros((len(lm), 68, 2)), det_lm=jnp.ones((len(lm), 68), bool))
    t["round1"] = median_time(lambda: block(f["round1"](b["pc"], obs)), repeats)
    full = median_time(lambda: block(f["full"](b["pc"], obs)), repeats)
    t["round2"] = max(full - t["round1"], 0.0)
  t["total"] = t["unet"] + t["decode"] + t["landmarks"] + t["round1"] + t["round2"]
  return {k: round(v, 4) for k, v in t.items()}


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--config", default="configs/quickstart.py")
  ap.add_argument("--workdir", default="")
  ap.add_argument("--throughput_batch", type=int, default=32)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--skip_eager_throughput", action="store_true")
  ap.add_argument("--model", default="", help="instead of the config's model, e.g. "
                  "synthetic:53215 for a BFM-sized random model when no BFM is at hand")
  args = ap.parse_args()
  config = load_config(args.config)
  if args.model:
    config.model = args.model
  model3d = mm.load_model(config.model)
  out = {"machine": f"{platform.machine()} {os.cpu_count()} CPU, {jax.devices()[0].platform}",
         "config": args.config, "trained_weights": bool(args.workdir),
         "C": config.eval.num_selected, "image_size": config.data.image_size,
         "model": f"{model3d.name} V={model3d.num_vertices}", "q": config.cpr.num_stages,
         "unet_widths": list(config.unet.widths), "lmnet_widths": list(config.lmnet.widths),
         "cpr_width": config.cpr.width,
         "paper_s_per_image_gtx1080ti": PAPER_S_PER_IMAGE}
  runs = [(1, "latency_batch1")]
  if args.throughput_batch:
    runs.append((args.throughput_batch, f"batch{args.throughput_batch}"))
  for batch, label in runs:
    b = build(config, model3d, args.workdir, batch)
    out[f"{label}_jit_stage_mib"] = stage_memory(b)
    for jit in (True, False):
      if not jit and batch > 1 and args.skip_eager_throughput:
        continue
      t0 = time.time()
      res = time_stages(b, jit, args.repeats if jit else 1)
      res["images_per_s"] = round(batch / res["total"], 2)
      res["s_per_image"] = round(res["total"] / batch, 4)
      res["wall_s"] = round(time.time() - t0, 1)
      out[f"{label}_{'jit' if jit else 'eager'}"] = res
      print(f"{label} {'jit' if jit else 'eager'}: {res}", file=sys.stderr, flush=True)
  j, e = out["latency_batch1_jit"], out["latency_batch1_eager"]
  out["jit_speedup_latency"] = round(e["total"] / j["total"], 2)
  out["speedup_vs_paper_latency"] = round(PAPER_S_PER_IMAGE / j["total"], 2)
  out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10, 1)
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
