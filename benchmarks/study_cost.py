"""What each method of the robustness study costs per fit on this machine, in one run: the host
baselines (OpenCV PnP on 68 landmarks and on the C selected vertices, the scipy
Levenberg-Marquardt online fit over every detected vertex) against the jitted regressors
(CPR(C), CPR-H, CPRFA at the evaluation batch size), and the online fit again as one jitted,
vmapped JAX function (`baselines.online_lm_jax`), on the same observations: the true DAFIs of
synth-aflw decoded as the config decodes (`cpr.decode`), and the landmark network's points.
Prints one JSON object.

    python benchmarks/study_cost.py --workdir runs/quickstart [--config configs/quickstart.py] \
        [--data_dir data]
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
from cprfa_jax import cli, observe, workdirs  # noqa: E402
from cprfa_jax.baselines import fitting, online_lm_jax  # noqa: E402
from cprfa_jax.data import datasets  # noqa: E402
from cprfa_jax.decode import pixel  # noqa: E402
from cprfa_jax.evaluate import methods, table2
from cprfa_jax.nets import build
from cprfa_jax.studies import robustness  # noqa: E402


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--config", default="configs/quickstart.py")
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--num", type=int, default=32)
  ap.add_argument("--data_dir", default="", help="where synth-aflw is (built there if not)")
  args = ap.parse_args()
  config = cli.load_config(args.config)
  if args.data_dir:
    config.data.data_dir = args.data_dir
  model3d = cli.load_model(config)
  s = config.data.image_size
  src = datasets.ensure_set(model3d, "synth-aflw", config.data.data_dir, s, args.num)
  exs = [src[i] for i in range(args.num)]
  images = np.stack([e["image"] for e in exs])
  lm_px = np.asarray(build.landmarks(config)(workdirs.params_of(config, args.workdir, "landmarks"),
                                                images)[0])
  tree = pixel.build_pncc_tree(model3d.pncc_Vx3)
  obs = observe.host_observations(np.stack([e["dafi"] for e in exs]).astype(np.float32),
                             np.stack([e["mask"] for e in exs]).astype(bool), lm_px, tree,
                             config.cpr.match_dist, (s, s), decode=config.cpr.decode)
  sel = workdirs.read_selection(args.workdir)
  c = sel["selected"]
  mean = np.asarray(model3d.mean_Vx3)
  lm3d = mean[np.asarray(model3d.landmarks_68)]
  n = args.num

  def per_fit(fn):
    return median_time(fn, 3) / n       # after one warm-up call (first-call and jit costs)

  out = {"machine": f"{platform.machine()} {os.cpu_count()} CPU, {jax.devices()[0].platform}",
         "config": args.config, "image_size": s, "num_vertices": model3d.num_vertices,
         "C": len(c), "num_images": n, "s_per_fit": {}}
  t = out["s_per_fit"]
  t["PnP-68"] = per_fit(lambda: [fitting.pnp_pose(lm3d, obs["y_lm"][i]) for i in range(n)])
  t["PnP + DAFI(C)"] = per_fit(lambda: [
      fitting.pnp_pose(mean[c][obs["det_all"][i, c]], obs["y_all"][i, c][obs["det_all"][i, c]])
      for i in range(n)])
  t["Online LM"] = per_fit(lambda: [fitting.online_fit(model3d, obs["y_all"][i],
                                                       obs["det_all"][i]) for i in range(n)])
  # The same fit, batched and jitted (baselines.online_lm_jax): how far its landmarks are from
  # the host fit's, and what it costs (the whole batch at once; host-side start included).
  host = [fitting.online_fit(model3d, obs["y_all"][i], obs["det_all"][i]) for i in range(n)]
  dev = online_lm_jax.online_fit_batch(model3d, obs["y_all"], obs["det_all"])
  diffs = [np.abs(fitting.landmarks_of(model3d, hp, ha) - fitting.landmarks_of(model3d, dp, da))
           .max() for (hp, ha), dp, da in zip(host, *dev) if hp is not None and dp is not None]
  out["online_lm_jax_max_landmark_difference"] = float(max(diffs)) if diffs else None
  out["online_lm_fits_host_vs_jax"] = [sum(h[0] is not None for h in host),
                                       sum(p is not None for p in dev[0])]
  t["Online LM (JAX, batched)"] = per_fit(
      lambda: online_lm_jax.online_fit_batch(model3d, obs["y_all"], obs["det_all"]))
  trained, _ = table2.trained_regressors(config, args.workdir)
  for label, stage in robustness.REGRESSORS:
    if stage in trained:
      run = lambda st=stage: methods.run_regressor(config, model3d, st, trained[st], obs, c,
                                                    sel["layout"], True, config.eval.batch_size)
      t[label] = per_fit(run)
  t = {k: round(v, 5) for k, v in t.items()}
  out["s_per_fit"] = t
  out["fits_per_s"] = {k: round(1.0 / v, 1) for k, v in t.items()}
  reg = [v for k, v in t.items() if k in dict(robustness.REGRESSORS)]
  out["online_lm_over_slowest_regressor"] = round(t["Online LM"] / max(reg), 1) if reg else None
  host_total = sum(v for k, v in t.items() if k != "Online LM (JAX, batched)")
  out["online_lm_share_of_a_study_condition"] = round(t["Online LM"] / host_total, 3)
  out["online_lm_host_over_jax"] = round(t["Online LM"] / t["Online LM (JAX, batched)"], 1)
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
