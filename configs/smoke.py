"""CI's whole-pipeline run (tests/e2e/test_pipeline.py): every stage from scratch at 32 px in a few
minutes on 2 CPU cores, long enough that the regressors, CAPU included, take 150 optimiser steps
(the CAPU NaN of issue 9 appeared after ~100), and the U-Net learns enough to beat its
initialisation in Table 1."""

from configs.common import base_config


def get_config():
  c = base_config()
  c.model = "synthetic:2000"
  c.data.image_size = 32
  c.data.num_eval = 16
  c.data.num_reference = 16
  c.data.eval_sets = ("synth-aflw", "synth-cofw")
  c.unet.widths = (8, 16, 32)
  c.unet.optim.update(lr=3e-3, lr_end=3e-4)
  c.unet.train.update(batch_size=8, num_steps=150, log_every=50, checkpoint_every=50)
  c.lmnet.widths = (4, 8, 16)
  c.lmnet.train.update(batch_size=8, num_steps=60, log_every=30, checkpoint_every=30)
  c.lmnet.optim.update(lr=1e-2, lr_end=1e-3)
  c.cpr.width, c.cpr.features, c.cpr.hidden = 4, 16, 16
  c.cpr.max_sampled = 64
  c.cpr.match_dist = 0.03
  c.cpr.train.update(batch_size=4, num_steps=150, log_every=25, checkpoint_every=50)
  c.cpr.optim.update(lr=3e-3, lr_end=3e-4)
  c.eval.batch_size = 16
  c.cpr.num_selected = 64
  return c
