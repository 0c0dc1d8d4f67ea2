"""Defaults shared by every config; each config file changes what it needs."""

import ml_collections


def _schedule(lr, lr_end, batch_size, num_steps, log_every, checkpoint_every):
  # on_nonfinite: "stop" at a NaN/Inf loss or gradient, or "rewind" to the last checkpoint,
  # skip the batch that caused it and go on (at most max_rewinds times; train/loop.py).
  train = ml_collections.ConfigDict(dict(batch_size=batch_size, num_steps=num_steps,
                                         log_every=log_every, checkpoint_every=checkpoint_every,
                                         keep_checkpoints=3, on_nonfinite="stop", max_rewinds=3))
  optim = ml_collections.ConfigDict(dict(lr=lr, lr_end=lr_end, grad_clip=1.0))
  return train, optim


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # The pipeline train.py runs, in order, each stage in workdir/<stage> (cprfa_jax/workdirs.py):
  # dafi: HS-U-Net (§2.1) | landmarks: heatmap landmark network (FAN-3D's role, §2.5) |
  # cpr: CPR(C) round 1 | cpr_h: CPR-H, with landmark fusion | capu: round 2 on CPR-H (CPRFA).
  c.stages = ("dafi", "landmarks", "cpr", "cpr_h", "capu")
  c.stage = "dafi"                 # set per stage by workdirs.stage_config
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
  # §3.1's reference images for vertex selection: for a tfds data.train, this many training
  # examples are held out of training (the paper: ~1%); synthetic runs render their own.
  c.data.num_reference = 200
  c.data.loader_threads = 4        # tfds data.train: Grain read/augment threads per process
  c.data.loader_workers = 0        # ... or worker processes (Grain mp_prefetch) when > 0

  # Every stage's schedule is its own block's train / optim (workdirs.stage_config).
  # Stage dafi: the HS-U-Net.
  c.unet = ml_collections.ConfigDict()
  c.unet.widths = (16, 32, 64, 128)
  c.unet.train, c.unet.optim = _schedule(1e-4, 1e-7, 4, 1000, 50, 500)  # §3.2: batch 4, 1e-4..1e-7

  # Stage landmarks: 68 heatmaps (the paper uses FAN-3D; we train our own on the same data).
  c.lmnet = ml_collections.ConfigDict()
  c.lmnet.widths = (16, 32, 64, 128)
  c.lmnet.sigma = 1.5              # Gaussian heatmap target, in output pixels
  c.lmnet.train, c.lmnet.optim = _schedule(1e-3, 1e-5, 16, 1000, 50, 250)

  # Stages cpr / cpr_h / capu: the regressors of Eq. 4-8.
  c.cpr = ml_collections.ConfigDict()
  c.cpr.num_stages = 3             # q (§3.2)
  c.cpr.width = 16                 # CNN channels of the first layer (Fig. 4b)
  c.cpr.features = 64
  c.cpr.hidden = 64                # GRU state h
  c.cpr.pool = "mean"              # the CNNs' read-out: mean (global pooling) | flatten
  c.cpr.kappa = 0.1                # §3.2: κ of the detected vertices for Eq. 6's errors
  # Eq. 6's κ sample lives in a static array: 0 sizes it ceil(κ · V), so it is never cut short;
  # a positive value caps it (small configs, for speed; logged at start, in the report).
  c.cpr.max_sampled = 0
  c.cpr.num_path = 5               # M of Eq. 6
  c.cpr.match_dist = 0.01         # DAFI decoding for the fit (Table 1 keeps eval.match_dist)
  # pixel: §2.1 (a vertex at the mean of its matched pixels) | subpixel: the vertex's code found
  # in the interpolated PNCC field (`decode.subpixel`; `decode.subpixel_device` in the predictor).
  c.cpr.decode = "pixel"
  c.cpr.dafi_source = "unet"       # unet: the trained HS-U-Net | corrupted_gt: noisy true DAFIs
  # corrupted_gt's corruption: mild (PNCC noise + up to 3 rectangular holes) | study (one of
  # data.corrupt' five kinds at a random level: what the robustness study evaluates) |
  # none (the clean truth: the regressor's floor, issue 12).
  c.cpr.corruption = "mild"
  c.cpr.landmark_dropout = 0.1    # fused stages: drop an example's landmarks (runs without them)
  c.cpr.num_selected = 512         # C, vertices selected for CPR (§3.2)
  c.cpr.param_weight = 0.1         # loss = vertex reprojection + param_weight * parameter error
  c.cpr.train, c.cpr.optim = _schedule(1e-4, 1e-4, 1, 122450, 500, 5000)  # §3.2: batch 1, 1e-4

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 32
  c.eval.match_dist = 0.01         # §3.3: a pixel matches a vertex below this PNCC distance
  c.eval.accuracy_tau = 0.05       # p2: a detection is accurate below this NME
  c.eval.failure_nme = 0.1         # Table 2 / CED: an image fails above this NME
  # The online LM baseline: host (scipy, one face at a time) | jax (baselines.online_lm_jax,
  # eval.batch_size faces per jitted call; the same fit, landmarks within 2e-4 of the host's).
  c.eval.online_lm = "host"
  # 3DDFA's AFLW2000-3D-Reannotated.pts68.npy: AFLW2000-3D sets are also scored against it.
  c.eval.aflw2000_reannotated = ml_collections.config_dict.placeholder(str)
  return c
