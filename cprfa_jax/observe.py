"""From images to what the CPR fit sees (the pipeline's first half): DAFI + mask from the
HS-U-Net (or a corrupted ground-truth DAFI), the KD-tree vertex lookup of §2.1 for every model
vertex, and 68 landmarks from the landmark network (or any detector). Host code around jitted
networks; used by the regressor stages for training and by evaluate.py.

Coordinates: decoding gives pixels; the fit works in normalised image coordinates
(`geometry.projection.from_pixels`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from cprfa_jax import decode as decode_lib
from cprfa_jax.data import corrupt
from cprfa_jax.geometry import projection
from cprfa_jax.mm.model import shape
from cprfa_jax.nets import build
from cprfa_jax.nets.regressor import Observations
from cprfa_jax.workdirs import params_of


def observations(dafi_BxHxWx3, mask_BxHxW, landmarks_px_Bx68x2, tree, match_dist, hw,
                 landmarks_present_B=None, decode="pixel"):
  """The arrays of `nets.regressor.Observations` over all vertices (the caller indexes the
  C selected ones): dict of y_all (B, V, 2), det_all (B, V), y_lm (B, 68, 2), det_lm (B, 68),
  NumPy, normalised coordinates. landmarks_px None: no landmark source; landmarks_present_B:
  False drops an example's landmarks (all det_lm False); decode: `decode.decode_host`'s method."""
  px, det = decode_lib.decode_host(decode, dafi_BxHxWx3, mask_BxHxW, tree, match_dist)
  out = {"y_all": np.asarray(projection.from_pixels(px, hw), np.float32), "det_all": det}
  if landmarks_px_Bx68x2 is not None:
    b = len(landmarks_px_Bx68x2)
    present = np.ones(b, bool) if landmarks_present_B is None else np.asarray(landmarks_present_B)
    out["y_lm"] = np.asarray(projection.from_pixels(landmarks_px_Bx68x2, hw), np.float32)
    out["det_lm"] = np.repeat(present[:, None], 68, axis=1)
  return out


def to_observations(batch, sel_C) -> Observations:
  """A batch of `observe.observations` arrays -> the regressor's input."""
  y_all, det_all = jnp.asarray(batch["y_all"]), jnp.asarray(batch["det_all"])
  lm = (jnp.asarray(batch["y_lm"]), jnp.asarray(batch["det_lm"])) if "y_lm" in batch else (None, None)
  return Observations(y_all[:, sel_C], det_all[:, sel_C], y_all, det_all, *lm)


class Observer:
  """Images -> the arrays of `Observations` (dict, NumPy), with the trained U-Net and landmark
  network. `dropout` and `corrupted_gt` are for training; evaluation uses neither."""

  def __init__(self, config, root, model3d, with_landmarks: bool, dafi_source="unet",
               dropout=0.0):
    self.config, self.hw = config, (config.data.image_size,) * 2
    self.tree = decode_lib.build_pncc_tree(model3d.pncc_Vx3)
    self.dafi_source, self.dropout = dafi_source, dropout
    self.study_spacing = (corrupt.pncc_spacing(model3d.pncc_Vx3)
                          if dafi_source == "corrupted_gt" and config.cpr.corruption == "study"
                          else None)
    self.unet = (build.unet(config), params_of(config, root, "dafi"))
    self.lm = ((build.landmarks(config), params_of(config, root, "landmarks"))
               if with_landmarks else None)

  def dafi(self, images):
    """U-Net DAFI (B, H, W, 3) and mask (B, H, W)."""
    predict, p = self.unet
    d, m = predict(p, images)
    return np.asarray(d), np.asarray(m) > 0.5

  def landmarks(self, images):
    """Landmark pixels (B, 68, 2), or None without a landmark network."""
    return None if self.lm is None else np.asarray(self.lm[0](self.lm[1], images)[0])

  def observe(self, images, dafi_mask=None, landmarks_present_B=None):
    """(observations dict, DAFI, mask, landmark pixels) of a batch of images: the U-Net's DAFIs
    (or the given `dafi_mask` pair), decoded, and the landmark network's points. Evaluation
    calls it as it is; training through `__call__`."""
    d, m = self.dafi(images) if dafi_mask is None else dafi_mask
    lm = self.landmarks(images)
    obs = observations(d, m, lm, self.tree, self.config.cpr.match_dist, self.hw,
                       landmarks_present_B, self.config.cpr.decode)
    return obs, d, m, lm

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


def decode_set(config, params, model3d, source, num: int, landmark_net=None):
  """Runs the U-Net and decodes all vertices of the first `num` examples of `source`.

  Returns a dict of (N, ...) arrays: pred (N, V, 2), detected (N, V), gt (N, V, 2),
  landmarks (N, 68, 2), yaw (N,), and the first few images / DAFIs / masks for pictures.
  landmark_net: optional (predict, params) of the landmark network (`nets.build.landmarks`): its 68 points on the same images go to `lm_pred` (N, 68, 2).
  """
  predict = build.unet(config)
  tree = decode_lib.build_pncc_tree(model3d.pncc_Vx3)
  all_v = np.arange(model3d.num_vertices)
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
    pdafi, pmask = jax.device_get(predict(params, batch["image"]))
    if landmark_net is not None:
      out.setdefault("lm_pred", []).append(np.asarray(landmark_net[0](landmark_net[1], batch["image"])[0]))
    for i in range(len(exs)):
      pos, det = decode_lib.pixel.decode_dafi_kdtree(pdafi[i], pmask[i] > 0.5, tree, all_v,
                                             config.eval.match_dist)
      out["pred"].append(pos)
      out["detected"].append(det)
      if len(pictures) < 8:
        pictures.append((batch["image"][i], batch["dafi"][i], pdafi[i] * (pmask[i, ..., None] > 0.5),
                         pmask[i]))
    out["gt"].append(np.asarray(gt_vertex_pixels(model3d, batch["alpha_id"], batch["alpha_exp"],
                                                 batch["pose"], hw)))
    out["landmarks"].append(batch["landmarks"])
    out["yaw"].append(batch["yaw"])
  res = {k: (np.stack(v) if k in ("pred", "detected") else np.concatenate(v)) for k, v in out.items()}
  if landmark_net is not None:
    res["lm_pred"] = res["lm_pred"].astype(np.float32)
  res["pictures"] = pictures
  return res
