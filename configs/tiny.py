"""For tests: a few seconds per stage on one CPU core."""

from configs.common import base_config


def get_config():
  c = base_config()
  c.model = "synthetic:2000"
  c.data.image_size = 32
  c.data.num_eval = 6
  c.data.num_reference = 6
  c.unet.widths = (4, 8, 16)
  c.optim.lr = 3e-3
  c.optim.lr_end = 3e-4
  c.train.batch_size = 4
  c.train.num_steps = 8
  c.train.log_every = 2
  c.train.checkpoint_every = 4
  c.eval.batch_size = 4
  c.eval.num_selected = 64
  return c
