"""One builder per network, and the pipeline's inference functions, each jitted once: the one
compile cache.

`unet_network`, `landmarks_network` and `regressor_network` are the only places a network is
built from a config; the trainers (`train.stages`), the evaluation and the predictor all call
them, so a network's definition cannot drift between training and inference.

Parameters, the 3DMM, the selected vertices and the observations are *arguments* of every
function here, never closed over, so one compiled function serves every workdir, parameter set
and data set (jit itself retraces only for new shapes). A function is keyed by what defines its
network: the U-Net's and the landmark network's widths, the regressor's stage and sizes.
evaluate.py, the regressor stages' observer and `cprfa_jax.predict` all call these.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from cprfa_jax.cpr import path
from cprfa_jax.nets import landmark_net
from cprfa_jax.nets.hs_unet import HSUNet
from cprfa_jax.nets.landmark_net import STRIDE, LandmarkNet
from cprfa_jax.nets.regressor import CprRegressor

# The regressor stages (§2.5, §3.4's ablation): which branches each one has.
VARIANTS = {"cpr": dict(fusion=False, capu=False), "cpr_h": dict(fusion=True, capu=False),
            "capu": dict(fusion=True, capu=True)}


def preprocess(image_BxHxWx3) -> jnp.ndarray:
  """uint8 RGB -> float32 centred on 0: the input of both image networks."""
  return jnp.asarray(image_BxHxWx3, jnp.float32) / 255.0 - 0.5


def regressor_network(config, model3d, stage) -> CprRegressor:
  """The CPR regressor of a stage (`VARIANTS`) for this config and 3DMM."""
  if stage not in VARIANTS:
    raise ValueError(f"stage {stage!r} is not a regressor stage: choose from {sorted(VARIANTS)}")
  c = config.cpr
  return CprRegressor(num_alpha=model3d.num_id + model3d.num_exp, num_stages=c.num_stages,
                      width=c.width, features=c.features, hidden=c.hidden, kappa=c.kappa,
                      max_sampled=c.max_sampled, num_path=c.num_path, pool=c.pool,
                      **VARIANTS[stage])


def kappa_sample_line(config, model3d) -> str:
  """What Eq. 6's κ sample is at this model and config, said at the start of every regressor
  stage (and recorded in evaluate.py's report): derived from V, or capped by cpr.max_sampled."""
  c = config.cpr
  b = path.sample_bound(c.kappa, model3d.num_vertices, c.max_sampled or None)
  line = (f"Eq. 6 samples round(κ · #detected) of the detected vertices, κ = {c.kappa}: up to "
          f"{b.k_max} per image")
  if b.capped:
    return line + (f", capped by --config.cpr.max_sampled={c.max_sampled} below ceil(κ · V) = "
                   f"{b.needed} (V = {model3d.num_vertices}): images with more than "
                   f"{int(b.k_max / c.kappa)} detected vertices use fewer than κ of them")
  return line + f" (ceil(κ · V), V = {model3d.num_vertices}: never capped)"


def unet(config):
  """(params, images uint8 (B, H, W, 3)) -> (DAFI (B, H, W, 3), mask probability (B, H, W))."""
  return _unet(tuple(config.unet.widths))


@functools.lru_cache(maxsize=None)
def _unet(widths):
  return jax.jit(functools.partial(unet_apply, HSUNet(widths)))


def unet_network(config) -> HSUNet:
  return HSUNet(tuple(config.unet.widths))


def unet_apply(net, params, images):
  """The U-Net's last side output (the DAFI and its mask logits, §2.1), as probabilities."""
  dafi, logits = net.apply({"params": params}, preprocess(images))[-1]
  return dafi, jax.nn.sigmoid(logits)


def landmarks(config):
  """(params, images uint8 (B, H, W, 3)) -> (68 landmarks in pixels (B, 68, 2), confidence
  (B, 68))."""
  return _landmarks(tuple(config.lmnet.widths))


@functools.lru_cache(maxsize=None)
def _landmarks(widths):
  return jax.jit(functools.partial(landmarks_apply, LandmarkNet(widths)))


def landmarks_network(config) -> LandmarkNet:
  return LandmarkNet(tuple(config.lmnet.widths))


def landmarks_apply(net, params, images):
  return landmark_net.soft_argmax(net.apply({"params": params}, preprocess(images)), STRIDE)


def regressor(config, model3d, stage):
  """(params, model3d, sel_C, layout_3xN, obs: Observations, keys (B, 2)) -> the regressor's
  outputs (`nets.regressor.CprRegressor`). `keys` are per-example PRNG keys for round 2's
  κ sample; inference passes the same key for every image (`inference_keys`), so an image's fit
  does not depend on its batch or its place in it."""
  net = regressor_network(config, model3d, stage)
  return _regressor(net)


@functools.lru_cache(maxsize=None)
def _regressor(net):
  # A Flax module is a frozen dataclass: equal settings hash equal, so this is the cache key.
  return jax.jit(lambda params, model3d, sel_C, layout_3xN, obs, keys: net.apply(
      {"params": params}, model3d, sel_C, layout_3xN, obs, keys))


def regressor_apply(config, model3d, stage, params, sel_C, layout_3xN, obs, keys):
  """The regressor, unjitted, for use inside a larger jitted function (`predict.core`)."""
  return regressor_network(config, model3d, stage).apply({"params": params}, model3d, sel_C,
                                                     layout_3xN, obs, keys)


def inference_keys(seed: int, batch: int):
  """The per-example keys of `regressor` at inference: one key, repeated."""
  return jax.numpy.broadcast_to(jax.random.PRNGKey(seed), (batch, 2))
