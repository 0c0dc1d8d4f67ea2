"""For tests: a few seconds per stage on one CPU core."""

from configs.common import base_config


def get_config():
  c = base_config()
  c.model = "synthetic:2000"
  c.data.image_size = 32
  c.data.num_eval = 6
  c.data.num_reference = 6
  c.unet.widths = (4, 8, 16)
  c.unet.optim.lr = 3e-3
  c.unet.optim.lr_end = 3e-4
  c.unet.train.batch_size = 4
  c.unet.train.num_steps = 8
  c.unet.train.log_every = 2
  c.unet.train.checkpoint_every = 4
  c.lmnet.widths = (4, 8, 16)
  c.lmnet.train.update(batch_size=4, num_steps=4, log_every=2, checkpoint_every=2)
  c.cpr.width, c.cpr.features, c.cpr.hidden = 4, 16, 8
  c.cpr.max_sampled = 32
  c.cpr.train.update(batch_size=2, num_steps=2, log_every=1, checkpoint_every=2)
  c.cpr.optim.update(lr=1e-3, lr_end=1e-3)
  c.eval.batch_size = 4
  c.cpr.num_selected = 64
  return c
