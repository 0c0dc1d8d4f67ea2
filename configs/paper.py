"""The paper's settings (§3.2): 256 x 256, batch 4, 40 epochs of 300W-LP (122,450 images),
Adam from 1e-4 to 1e-7, C = 512. For a GPU/TPU; on the CPU it runs, slowly.

Build 300W-LP first (docs/datasets.md), then:
  python train.py --config configs/paper.py --workdir runs/paper \
      --config.model=bfm3ddfa:/path/bfm.mat --config.data.data_dir=/path/cprfa_data
"""

from configs.common import base_config


def get_config():
  c = base_config()
  c.data.train = "tfds:cprfa_300wlp_256"
  c.data.image_size = 256
  c.data.augment = True
  c.data.eval_sets = ("synth-aflw", "tfds:cprfa_aflw2000_256")
  c.unet.widths = (32, 64, 128, 256, 512)
  c.train.batch_size = 4
  c.train.num_steps = 40 * 122450 // 4
  c.train.log_every = 500
  c.train.checkpoint_every = 10000
  return c
