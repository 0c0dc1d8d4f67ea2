"""Defaults shared by every config; each config file changes what it needs."""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.stage = "dafi"                 # dafi: the HS-U-Net stage (§2.1)
  c.seed = 0
  c.model = "synthetic"            # cprfa_jax.mm.load_model spec: synthetic[:V] | sfm:DIR | npz:FILE
  c.distributed = False            # multi-host: jax.distributed.initialize() at start

  c.data = ml_collections.ConfigDict()
  c.data.train = "synthetic"       # synthetic (rendered on the fly) | tfds:NAME (in data_dir)
  c.data.data_dir = "data"         # where fixed sets are persisted / read (tfds array_record)
  c.data.image_size = 64
  c.data.augment = False           # §3.2 rotation/translation/scale (for real training sets)
  c.data.eval_sets = ("synth-aflw",)
  c.data.num_eval = 0              # 0: the whole set
  c.data.num_reference = 200       # reference images for vertex selection (§3.1)

  c.unet = ml_collections.ConfigDict()
  c.unet.widths = (16, 32, 64, 128)

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 1e-4                # §3.2: decreased from 1e-4 to 1e-7
  c.optim.lr_end = 1e-7
  c.optim.grad_clip = 1.0

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 4
  c.train.num_steps = 1000
  c.train.log_every = 50
  c.train.checkpoint_every = 500
  c.train.keep_checkpoints = 3

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 32
  c.eval.match_dist = 0.01         # §3.3: a pixel matches a vertex below this PNCC distance
  c.eval.num_selected = 512        # C, vertices selected for CPR (§3.2)
  c.eval.accuracy_tau = 0.05       # p2: a detection is accurate below this NME
  return c
