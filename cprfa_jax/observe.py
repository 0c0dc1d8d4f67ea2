"""From images to what the CPR fit sees (the pipeline's first half): DAFI + mask from the
HS-U-Net (or a given DAFI, e.g. a corrupted ground truth), the vertex lookup of §2.1 for every
model vertex, and 68 landmarks from the landmark network.

One pure function, `observe_images`, does it on the device for training, evaluation, the studies
and the predictor alike (`predict.core` calls it inside its own jit); `host_observations` is the
host reference it is tested against (`decode.decode_host`: the KD-tree and the NumPy sub-pixel
decoder). Coordinates: decoding gives pixels; the fit works in normalised image coordinates
(`geometry.projection.from_pixels`).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from cprfa_jax import decode as decode_lib
from cprfa_jax.batching import padded_batches
from cprfa_jax.data import corrupt
from cprfa_jax.geometry import projection
from cprfa_jax.mm.model import shape
from cprfa_jax.nets import build
from cprfa_jax.nets.regressor import Observations
from cprfa_jax.workdirs import params_of


class Nets(NamedTuple):
  """The static part of `observe_images` (hashable: jit's static argument): the two image
  networks (landmarks None: no landmark branch) and the decoding method (`decode.METHODS`)."""
  unet: Any
  landmarks: Any
  decode: str


def nets_of(config, with_landmarks: bool, method: str | None = None) -> Nets:
  """The networks of a config; method: the decoder (default cpr.decode, "pixel" for old
  configs without the key)."""
  method = method or config.cpr.get("decode", "pixel")
  decode_lib.check_method(method)
  return Nets(build.unet_network(config),
              build.landmarks_network(config) if with_landmarks else None, method)


@struct.dataclass
class Codes:
  """The model's PNCC codes in the two forms the device decoders read: the uniform grid
  ("pixel", its max_dist is the match threshold) and the raw codes ("subpixel")."""
  grid: decode_lib.PnccGrid
  pncc_Vx3: jnp.ndarray

  @property
  def match_dist(self) -> float:
    return self.grid.max_dist


def codes_of(model3d, match_dist: float) -> Codes:
  pncc = np.asarray(model3d.pncc_Vx3, np.float32)
  return Codes(decode_lib.build_pncc_grid(pncc, match_dist), jnp.asarray(pncc))


def decode_observations(method: str, codes: Codes, dafi_BxHxWx3, mask_BxHxW) -> dict:
  """Pure: every vertex's decoded position, y_all (B, V, 2) normalised and px_all (B, V, 2)
  pixels, and det_all (B, V), by `decode.decode_device`'s `method`."""
  px, det = decode_lib.decode_device(method, dafi_BxHxWx3, mask_BxHxW, codes.grid,
                                     codes.pncc_Vx3, codes.match_dist)
  return {"y_all": projection.from_pixels(px, dafi_BxHxWx3.shape[1:3]), "px_all": px,
          "det_all": det}


def observe_images(nets: Nets, unet_params, landmark_params, codes: Codes, images_BxHxWx3,
                   dafi_mask=None, landmarks_present_B=None) -> dict:
  """Pure (jit / vmap-able). Returns a dict of device arrays: `decode_observations`' y_all,
  px_all, det_all; the DAFI (B, H, W, 3) and mask (B, H, W) decoded; with a landmark network
  landmarks_px (B, 68, 2), y_lm (B, 68, 2) normalised and det_lm (B, 68).
  dafi_mask: a (DAFI, mask) pair to decode instead of the U-Net's (the U-Net is not run);
  landmarks_present_B: False drops an example's landmarks (all its det_lm False)."""
  hw = images_BxHxWx3.shape[1:3]
  if dafi_mask is None:
    dafi, prob = build.unet_apply(nets.unet, unet_params, images_BxHxWx3)
    mask = prob > 0.5
  else:
    dafi, mask = jnp.asarray(dafi_mask[0], jnp.float32), jnp.asarray(dafi_mask[1], bool)
  out = {**decode_observations(nets.decode, codes, dafi, mask), "dafi": dafi, "mask": mask}
  if nets.landmarks is not None:
    b = images_BxHxWx3.shape[0]
    lm = build.landmarks_apply(nets.landmarks, landmark_params, images_BxHxWx3)[0]
    present = (jnp.ones(b, bool) if landmarks_present_B is None
               else jnp.asarray(landmarks_present_B, bool))
    out.update(landmarks_px=lm, y_lm=projection.from_pixels(lm, hw),
               det_lm=jnp.broadcast_to(present[:, None], (b, lm.shape[1])))
  return out


# One compilation per network set / decoder (and input shapes), shared by every caller.
observe_images_jit = jax.jit(observe_images, static_argnums=0)
decode_observations_jit = jax.jit(decode_observations, static_argnums=0)


def decode_set_arrays(method: str, codes: Codes, dafi_NxHxWx3, mask_NxHxW, batch_size: int):
  """`decode_observations` over a whole set of given DAFIs on the host (the studies' corrupted
  ground truths), `batch_size` at a time: dict of NumPy y_all (N, V, 2), det_all (N, V)."""
  parts = [jax.device_get(decode_observations_jit(
      method, codes, jnp.asarray(dafi_NxHxWx3[idx], jnp.float32),
      jnp.asarray(mask_NxHxW[idx], bool)))
      for _, _, idx in padded_batches(len(dafi_NxHxWx3), batch_size)]
  n = len(dafi_NxHxWx3)
  return {k: np.concatenate([p[k] for p in parts])[:n] for k in ("y_all", "det_all")}


def host_observations(dafi_BxHxWx3, mask_BxHxW, landmarks_px_Bx68x2, tree, match_dist, hw,
                      landmarks_present_B=None, decode="pixel"):
  """The reference of `observe_images`'s observation arrays, on the host: dict of y_all
  (B, V, 2), det_all (B, V), y_lm (B, 68, 2), det_lm (B, 68), NumPy, normalised coordinates,
  decoded by `decode.decode_host` (the KD-tree or the NumPy sub-pixel decoder). `tree`:
  `decode.build_pncc_tree` of the model's codes; landmarks_px None: no landmark source."""
  px, det = decode_lib.decode_host(decode, dafi_BxHxWx3, mask_BxHxW, tree, match_dist)
  out = {"y_all": np.asarray(projection.from_pixels(px, hw), np.float32), "det_all": det}
  if landmarks_px_Bx68x2 is not None:
    b = len(landmarks_px_Bx68x2)
    present = np.ones(b, bool) if landmarks_present_B is None else np.asarray(landmarks_present_B)
    out["y_lm"] = np.asarray(projection.from_pixels(landmarks_px_Bx68x2, hw), np.float32)
    out["det_lm"] = np.repeat(present[:, None], 68, axis=1)
  return out


def to_observations(batch, sel_C) -> Observations:
  """A batch of observation arrays (`observe_images`' or `host_observations`') -> the
  regressor's input."""
  y_all, det_all = jnp.asarray(batch["y_all"]), jnp.asarray(batch["det_all"])
  lm = (jnp.asarray(batch["y_lm"]), jnp.asarray(batch["det_lm"])) if "y_lm" in batch else (None, None)
  return Observations(y_all[:, sel_C], det_all[:, sel_C], y_all, det_all, *lm)


OBS_KEYS = ("y_all", "det_all", "y_lm", "det_lm")


class Observer:
  """Images -> observation arrays (dict, NumPy) with a workdir's trained U-Net and landmark
  network, through `observe_images` on the device. `dropout` and `corrupted_gt` are for
  training; evaluation uses neither."""

  def __init__(self, config, root, model3d, with_landmarks: bool, dafi_source="unet",
               dropout=0.0):
    self.config = config
    self.nets = nets_of(config, with_landmarks)
    self.codes = codes_of(model3d, config.cpr.match_dist)
    self.dafi_source, self.dropout = dafi_source, dropout
    self.study_spacing = (corrupt.pncc_spacing(model3d.pncc_Vx3)
                          if dafi_source == "corrupted_gt" and config.cpr.corruption == "study"
                          else None)
    self.unet_params = params_of(config, root, "dafi")
    self.lm_params = params_of(config, root, "landmarks") if with_landmarks else None

  def observe(self, images, dafi_mask=None, landmarks_present_B=None):
    """(observations dict, DAFI, mask, landmark pixels or None) of a batch of images, NumPy:
    the U-Net's DAFIs (or the given `dafi_mask` pair), decoded, and the landmark network's
    points. Evaluation calls it as it is; training through `__call__`."""
    out = jax.device_get(observe_images_jit(self.nets, self.unet_params, self.lm_params,
                                            self.codes, images, dafi_mask, landmarks_present_B))
    obs = {k: out[k] for k in OBS_KEYS if k in out}
    return obs, out["dafi"], out["mask"], out.get("landmarks_px")

  def __call__(self, batch, k=0):
    """A training batch's observations: corrupted true DAFIs (cpr.dafi_source=corrupted_gt)
    and landmark dropout, one generator per example."""
    # One generator per example, keyed by its row of global batch k: the corruption and the
    # landmark dropout of an example do not depend on how many processes share the batch.
    b = len(batch["image"])
    row0 = jax.process_index() * b
    rngs = [np.random.default_rng([self.config.seed, 7, k, row0 + i]) for i in range(b)]
    dafi_mask = (corrupt.corrupted_gt(batch["dafi"], batch["mask"], rngs, self.study_spacing)
                 if self.dafi_source == "corrupted_gt" else None)
    present = np.array([r.random() >= self.dropout for r in rngs])
    return self.observe(batch["image"], dafi_mask, present)[0]


@functools.partial(jax.jit, static_argnames=("hw",))
def gt_vertex_pixels(model3d, alpha_id_BxK, alpha_exp_BxE, pose_Bx6, hw):
  """Ground-truth pixel positions (B, V, 2) of every vertex (Eq. 1 + Eq. 2)."""
  verts = jax.vmap(shape, in_axes=(None, 0, 0))(model3d, alpha_id_BxK, alpha_exp_BxE)
  return projection.to_pixels(jax.vmap(projection.project)(verts, pose_Bx6), hw)


def decode_set(config, params, model3d, source, num: int, landmark_params=None):
  """Runs the U-Net and decodes all vertices of the first `num` examples of `source` as §3.3
  does (the pixel mean, within eval.match_dist), through `observe_images`.

  Returns a dict of (N, ...) arrays: pred (N, V, 2) pixels, detected (N, V), gt (N, V, 2),
  landmarks (N, 68, 2), yaw (N,), and the first few images / DAFIs / masks for pictures.
  landmark_params: the landmark network's parameters (`nets.build.landmarks_network`): its
  68 points on the same images go to `lm_pred` (N, 68, 2)."""
  nets = nets_of(config, landmark_params is not None, "pixel")
  codes = codes_of(model3d, config.eval.match_dist)
  hw = (config.data.image_size,) * 2
  out = {k: [] for k in ("pred", "detected", "gt", "landmarks", "yaw")}
  pictures = []
  b = config.eval.batch_size
  for lo in range(0, num, b):
    exs = [source[i] for i in range(lo, min(lo + b, num))]
    batch = {k: np.stack([e[k] for e in exs]) for k in exs[0]}
    if batch["image"].shape[1:3] != hw:
      raise ValueError(f"test images are {batch['image'].shape[1:3]}, the model was trained at "
                       f"{hw}: use a test set built at --config.data.image_size={hw[0]}")
    o = jax.device_get(observe_images_jit(nets, params, landmark_params, codes, batch["image"]))
    out["pred"].append(o["px_all"])
    out["detected"].append(o["det_all"])
    if landmark_params is not None:
      out.setdefault("lm_pred", []).append(o["landmarks_px"].astype(np.float32))
    for i in range(min(len(exs), 8 - len(pictures))):
      pictures.append((batch["image"][i], batch["dafi"][i],
                       o["dafi"][i] * o["mask"][i, ..., None], o["mask"][i]))
    out["gt"].append(np.asarray(gt_vertex_pixels(model3d, batch["alpha_id"], batch["alpha_exp"],
                                                 batch["pose"], hw)))
    out["landmarks"].append(batch["landmarks"])
    out["yaw"].append(batch["yaw"])
  res = {k: np.concatenate(v) for k, v in out.items()}
  res["pictures"] = pictures
  return res
