"""Stage 1 (§2.1): train the HS-U-Net from images to DAFIs and masks.

The stage gives the shared loop (`train.loop`) an init function, a loss and a batch source;
`train.selection` then selects the CPR vertices with it and `evaluate.table1` measures what it
learned (Table 1). The loss lives here, with its trainer, not beside the network in `nets`:
inference builds the network without loading optax.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from cprfa_jax.nets import build
from cprfa_jax.train import loop, sharding

KEYS = ("image", "dafi", "mask")


def downsample_targets(dafi_BxHxWx3, mask_BxHxW, factor: int):
  """Ground truth at 1/factor: the mask is the fraction of face pixels in each block (a soft
  target for the cross-entropy); the DAFI is the mean colour over the face pixels of the block,
  counted only where the whole block is face, so no averaged code mixes face and background."""
  if factor == 1:
    return dafi_BxHxWx3, mask_BxHxW.astype(jnp.float32), mask_BxHxW.astype(jnp.float32)
  b, h, w, _ = dafi_BxHxWx3.shape
  m = mask_BxHxW.astype(jnp.float32).reshape(b, h // factor, factor, w // factor, factor)
  d = dafi_BxHxWx3.reshape(b, h // factor, factor, w // factor, factor, 3)
  frac = m.mean((2, 4))
  dafi = (d * m[..., None]).sum((2, 4)) / jnp.maximum(m.sum((2, 4)), 1.0)[..., None]
  return dafi, frac, (frac >= 1.0).astype(jnp.float32)


def hs_unet_loss(outputs, dafi_BxHxWx3, mask_BxHxW):
  """Sum over the three groups of L1 (inside the mask) + sigmoid cross-entropy. Returns
  (loss, metrics dict)."""
  full_h = dafi_BxHxWx3.shape[1]
  total, metrics = 0.0, {}
  for pred_dafi, logits in outputs:
    factor = full_h // pred_dafi.shape[1]
    gt_dafi, gt_mask, weight = downsample_targets(dafi_BxHxWx3, mask_BxHxW, factor)
    l1 = (jnp.abs(pred_dafi - gt_dafi).sum(-1) * weight).sum() / jnp.maximum(weight.sum(), 1.0)
    ce = optax.sigmoid_binary_cross_entropy(logits, gt_mask).mean()
    total = total + l1 + ce
    metrics[f"l1_1/{factor}"] = l1
    metrics[f"ce_1/{factor}"] = ce
  metrics["loss"] = total
  return total, metrics


def validate(config) -> None:
  """Config errors a user can fix, named by their flag, before anything expensive runs."""
  widths = tuple(config.unet.widths)
  size = config.data.image_size
  if len(widths) < 3:
    raise ValueError(f"--config.unet.widths={widths}: need at least 3 levels (1/4, 1/2, 1/1 outputs)")
  if size % 2 ** (len(widths) - 1):
    raise ValueError(f"--config.data.image_size={size} must be divisible by "
                     f"{2 ** (len(widths) - 1)} for {len(widths)} U-Net levels")
  if not config.optim.lr_end <= config.optim.lr:
    raise ValueError(f"--config.unet.optim.lr_end={config.optim.lr_end} must not exceed "
                     f"--config.unet.optim.lr={config.optim.lr}")
  # The data stack (grain, tensorflow_datasets) loads only where batches are made: the stage's
  # step runs without it (benchmarks/device_check.py, on accelerator images that lack it).
  from cprfa_jax.data import streams  # pylint: disable=import-outside-toplevel
  streams.check_data_train(config)


def train_batches(config, model3d):
  """batches(start_step) -> iterator of host batches for steps start+1, ... (`data.streams`)."""
  from cprfa_jax.data import streams  # pylint: disable=import-outside-toplevel
  return streams.batches_fn(config, model3d, KEYS)


def stage_fns(config):
  """(init_fn, loss_fn) of this stage for `train.loop.train`."""
  net = build.unet_network(config)

  def init_fn(rng, batch):
    return net.init(rng, build.preprocess(batch["image"][:1]))["params"]

  def loss_fn(params, batch, rng):
    del rng  # the U-Net has no dropout
    outputs = net.apply({"params": params}, build.preprocess(batch["image"]))
    return hs_unet_loss(outputs, batch["dafi"], batch["mask"])

  return init_fn, loss_fn


def run(config, workdir: str, model3d, log=print, batches=None):
  """Trains the HS-U-Net; returns the final TrainState. `batches` overrides the data source
  (tests use it to interrupt a run)."""
  validate(config)
  config = sharding.fit_batch_to_devices(config, log)
  init_fn, loss_fn = stage_fns(config)
  return loop.train(config, workdir, init_fn, loss_fn,
                    batches or train_batches(config, model3d), log=log)
