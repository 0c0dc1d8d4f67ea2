"""Stage 2 (§2.5): train the 68-landmark heatmap network whose landmarks CPR-H fuses.

The paper takes its landmarks from FAN-3D; we train our own small heatmap network
(`nets.landmark_net`) on the same data as the HS-U-Net. Like `train.stages.dafi`, the stage gives
the shared loop (`train.loop`) an init function, a loss and a batch source; the later stages
run it through `nets.build.landmarks`.
"""

from __future__ import annotations

from cprfa_jax.nets import build, landmark_net
from cprfa_jax.nets.landmark_net import STRIDE
from cprfa_jax.train import loop, sharding

KEYS = ("image", "landmarks")


def validate(config) -> None:
  """Config errors a user can fix, named by their flag, before anything expensive runs."""
  widths = tuple(config.lmnet.widths)
  size = config.data.image_size
  if len(widths) < 2:
    raise ValueError(f"--config.lmnet.widths={widths}: need at least 2 levels (heatmaps at 1/2)")
  if any(w >= 8 and w % 8 for w in widths):
    # ConvBlock's GroupNorm uses min(8, width) groups.
    raise ValueError(f"--config.lmnet.widths={widths}: widths of 8 or more must be multiples of 8")
  if size % 2 ** (len(widths) - 1):
    raise ValueError(f"--config.data.image_size={size} must be divisible by "
                     f"{2 ** (len(widths) - 1)} for {len(widths)} levels of --config.lmnet.widths")
  if not config.lmnet.sigma > 0:
    raise ValueError(f"--config.lmnet.sigma={config.lmnet.sigma} must be > 0 (heatmap cells)")
  if not config.optim.lr_end <= config.optim.lr:
    raise ValueError(f"--config.lmnet.optim.lr_end={config.optim.lr_end} must not exceed "
                     f"--config.lmnet.optim.lr={config.optim.lr}")
  # The data stack (grain, tensorflow_datasets) loads only where batches are made: the stage's
  # step runs without it (benchmarks/device_check.py, on accelerator images that lack it).
  from cprfa_jax.data import streams  # pylint: disable=import-outside-toplevel
  streams.check_data_train(config)


def train_batches(config, model3d):
  """The batches of `config.data.train` every stage trains on (`data.streams`): image and
  landmarks."""
  from cprfa_jax.data import streams  # pylint: disable=import-outside-toplevel
  return streams.batches_fn(config, model3d, KEYS)


def stage_fns(config):
  """(init_fn, loss_fn) of this stage for `train.loop.train`."""
  net = build.landmarks_network(config)
  sigma = float(config.lmnet.sigma)

  def init_fn(rng, batch):
    return net.init(rng, build.preprocess(batch["image"][:1]))["params"]

  def loss_fn(params, batch, rng):
    del rng  # no dropout
    logits = net.apply({"params": params}, build.preprocess(batch["image"]))
    return landmark_net.landmark_loss(logits, batch["landmarks"], sigma, STRIDE)

  return init_fn, loss_fn


def run(config, workdir: str, model3d, log=print, batches=None):
  """Trains the landmark network; returns the final TrainState. `batches` overrides the data
  source (tests use it to interrupt a run)."""
  validate(config)
  config = sharding.fit_batch_to_devices(config, log)
  init_fn, loss_fn = stage_fns(config)
  return loop.train(config, workdir, init_fn, loss_fn,
                    batches or train_batches(config, model3d), log=log)
