"""Stages cpr, cpr_h, capu (§2.3-2.5, §3.2): train the CPR regressors on observations of
rendered faces.

* cpr   : CPR(C), the DAFI CPR alone, round 1 (the ablation's "CPR(512)", §3.4);
* cpr_h : CPR-H, the DAFI CPR fused with the 68-landmark CPR (Fig. 4c, Eq. 8), round 1;
* capu  : CPR-H + CAPU = CPRFA: round 2 (Eq. 5-7) trained on top of the frozen CPR-H, as the
          paper trains "a different set of networks for consistency-aware parameter updating".

Training data: `config.data.train` (the synthetic stream or a tfds set such as 300W-LP, the
same batches as the other stages, `data.streams`), seen through the trained HS-U-Net (or
corrupted ground-truth DAFIs, `cpr.dafi_source`) and the landmark network, decoded on the
device by the predictor's own observation step (`observe.observe_images`). The loss (§3.2 leaves it open; the issue asks for "projected vertices plus the
parameters"): after every stage q of the trained round, the mean distance between the
projections of the 68 landmark and C selected vertices under the predicted and the true
parameters, in units of the face size s, plus `param_weight` times the squared parameter error;
later stages weigh more (q / Σq) so the early ones still learn a useful first step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from cprfa_jax import decode, observe, workdirs
from cprfa_jax.mm.model import join_alpha
from cprfa_jax.nets import build
from cprfa_jax.nets.regressor import generated_points
from cprfa_jax.numerics import safe_norm
from cprfa_jax.train import loop, sharding

STREAM_KEYS = ("image", "dafi", "mask", "alpha_id", "alpha_exp", "pose")


def validate(config, stage) -> None:
  c = config.cpr
  if stage not in build.VARIANTS:
    raise ValueError(f"stage {stage!r} is not a CPR stage: {sorted(build.VARIANTS)}")
  if c.dafi_source not in ("unet", "corrupted_gt"):
    raise ValueError(f"--config.cpr.dafi_source={c.dafi_source!r}: use 'unet' or 'corrupted_gt'")
  if c.corruption not in ("mild", "study"):
    raise ValueError(f"--config.cpr.corruption={c.corruption!r}: use 'mild' or 'study'")
  decode.check_method(c.decode)
  if c.pool not in ("mean", "flatten"):
    raise ValueError(f"--config.cpr.pool={c.pool!r}: use 'mean' or 'flatten'")
  if not 0 < c.kappa <= 1:
    raise ValueError(f"--config.cpr.kappa={c.kappa} must be in (0, 1]")
  if c.num_stages < 1 or c.num_path < 1:
    raise ValueError("--config.cpr.num_stages and --config.cpr.num_path must be >= 1")
  if not config.optim.lr_end <= config.optim.lr:
    raise ValueError(f"--config.cpr.optim.lr_end={config.optim.lr_end} must not exceed "
                     f"--config.cpr.optim.lr={config.optim.lr}")
  if not 0 <= c.landmark_dropout < 1:
    raise ValueError(f"--config.cpr.landmark_dropout={c.landmark_dropout} must be in [0, 1)")



def fit_loss(model3d, points_P, alpha_QxBxA, pose_QxBx6, alpha_gt_BxA, pose_gt_Bx6,
             param_weight: float):
  """Σ_q w_q [reprojection error of points_P / s + param_weight · parameter error], w_q ∝ q."""
  gt = generated_points(model3d, points_P, alpha_gt_BxA, pose_gt_Bx6)
  # The true face size (data, never a prediction) normalises; bounded away from 0 all the same.
  size = jnp.maximum(jnp.abs(pose_gt_Bx6[:, 3]), 1e-3)[:, None]
  q = alpha_QxBxA.shape[0]
  w = jnp.arange(1, q + 1, dtype=jnp.float32) / (q * (q + 1) / 2)

  def one(alpha, pose):
    pred = generated_points(model3d, points_P, alpha, pose)
    # safe_norm: at the truth every distance is 0, where ||.|| has no derivative.
    reproj = jnp.mean(safe_norm(pred - gt) / size)
    param = jnp.mean((alpha - alpha_gt_BxA) ** 2) + jnp.mean((pose - pose_gt_Bx6) ** 2)
    return reproj, param

  reproj, param = jax.vmap(one)(alpha_QxBxA, pose_QxBx6)
  loss = jnp.sum(w * (reproj + param_weight * param))
  return loss, {"reproj_last": reproj[-1], "reproj_first": reproj[0], "param_last": param[-1]}


def stage_fns(config, model3d, stage, sel_C, layout_3xN, frozen_round1=None):
  """(init_fn, loss_fn) for `loop.train`. For capu the trained parameters are round 2's only;
  round 1 is `frozen_round1` (CPR-H's `stages_round1`)."""
  net = build.regressor_network(config, model3d, stage)
  capu = build.VARIANTS[stage]["capu"]
  if capu and frozen_round1 is None:
    raise ValueError("the capu stage needs the trained CPR-H round 1 (stage cpr_h) first")
  sel = jnp.asarray(sel_C)
  layout = jnp.asarray(layout_3xN)
  points = jnp.concatenate([jnp.asarray(model3d.landmarks_68), sel])
  full = (lambda p: {"stages_round1": frozen_round1, **p}) if capu else (lambda p: p)

  def init_fn(rng, batch):
    one = jax.tree.map(lambda a: a[:1], batch)
    params = net.init(rng, model3d, sel, layout, observe.to_observations(one, sel), rng)["params"]
    return {"stages_round2": params["stages_round2"]} if capu else params

  def loss_fn(params, batch, rng):
    out = net.apply({"params": full(params)}, model3d, sel, layout,
                    observe.to_observations(batch, sel), rng)
    r = out["round2" if capu else "round1"]
    return fit_loss(model3d, points, r["alpha"], r["pose"], batch["alpha"], batch["pose"],
                    config.cpr.param_weight)

  return init_fn, loss_fn


class Observed:
  """Training batches for the regressors: the stage's batches of `config.data.train`
  (`data.streams`, the images every stage trains on) turned into observations by
  `observe_fn(batch, k) -> dict` (the trained U-Net's DAFIs of those images, decoded, and the
  landmark network's points), with the true parameters as targets."""

  def __init__(self, batches, start_batch, observe_fn):
    self._batches, self._observe, self._k = batches, observe_fn, start_batch

  def __iter__(self):
    return self

  def __next__(self):
    b = next(self._batches)
    out = self._observe(b, self._k)
    self._k += 1
    out["alpha"] = join_alpha(b["alpha_id"], b["alpha_exp"]).astype(np.float32)
    out["pose"] = b["pose"].astype(np.float32)
    return out

  def close(self):
    if hasattr(self._batches, "close"):
      self._batches.close()


def run(config, root, model3d, stage, sel, log=print, batches=None):
  """Trains one regressor stage of the pipeline in `root` (its U-Net and landmark network, and
  for capu CPR-H's round 1, trained there); `sel`: the workdir's vertex selection. Returns the
  final TrainState."""
  view = workdirs.stage_config(config, stage)
  validate(view, stage)
  view = sharding.fit_batch_to_devices(view, log)
  log(build.kappa_sample_line(view, model3d))
  fused = build.VARIANTS[stage]["fusion"]
  frozen = workdirs.params_of(config, root, "cpr_h")["stages_round1"] if stage == "capu" else None
  init_fn, loss_fn = stage_fns(view, model3d, stage, sel["selected"], sel["layout"], frozen)
  if batches is None:
    observer = observe.Observer(config, root, model3d, fused, config.cpr.dafi_source,
                                config.cpr.landmark_dropout if fused else 0.0)
    # The data stack (grain, tensorflow_datasets) loads only where batches are made: the stage's
    # step runs without it (benchmarks/device_check.py, on accelerator images that lack it).
    from cprfa_jax.data import streams  # pylint: disable=import-outside-toplevel
    source = streams.batches_fn(view, model3d, STREAM_KEYS)
    batches = lambda start: Observed(source(start), start, observer)
  return loop.train(view, workdirs.stage_dir(root, stage), init_fn, loss_fn, batches, log=log)
