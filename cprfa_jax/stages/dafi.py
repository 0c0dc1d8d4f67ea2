"""Stage 1 (§2.1): train the HS-U-Net from images to DAFIs and masks.

The stage gives the shared loop (`train.loop`) an init function, a loss and a batch source;
`dafi_eval` measures what it learned (Table 1) and selects the CPR vertices.
"""

from __future__ import annotations

import jax.numpy as jnp

from cprfa_jax.data import streams
from cprfa_jax.models.hs_unet import HSUNet, hs_unet_loss
from cprfa_jax.train import loop

KEYS = ("image", "dafi", "mask")


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
    raise ValueError(f"--config.optim.lr_end={config.optim.lr_end} must not exceed "
                     f"--config.optim.lr={config.optim.lr}")
  streams.check_data_train(config)


def network(config) -> HSUNet:
  return HSUNet(tuple(config.unet.widths))


def preprocess(image_BxHxWx3) -> jnp.ndarray:
  """uint8 RGB -> float32 centred on 0."""
  return jnp.asarray(image_BxHxWx3, jnp.float32) / 255.0 - 0.5


def train_batches(config, model3d):
  """batches(start_step) -> iterator of host batches for steps start+1, ... (`data.streams`)."""
  return streams.batches_fn(config, model3d, KEYS)


def stage_fns(config):
  """(init_fn, loss_fn) of this stage for `train.loop.train`."""
  net = network(config)

  def init_fn(rng, batch):
    return net.init(rng, preprocess(batch["image"][:1]))["params"]

  def loss_fn(params, batch, rng):
    del rng  # the U-Net has no dropout
    outputs = net.apply({"params": params}, preprocess(batch["image"]))
    return hs_unet_loss(outputs, batch["dafi"], batch["mask"])

  return init_fn, loss_fn


def run(config, workdir: str, model3d, log=print, batches=None):
  """Trains the HS-U-Net; returns the final TrainState. `batches` overrides the data source
  (tests use it to interrupt a run)."""
  validate(config)
  init_fn, loss_fn = stage_fns(config)
  return loop.train(config, workdir, init_fn, loss_fn,
                    batches or train_batches(config, model3d), log=log)
