"""`Predictor`: a trained pipeline applied to photos.

    predictor = Predictor.from_workdir(config, "runs/quickstart")
    faces = predictor(images_BxHxWx3, boxes_Bx4)          # one face per image
    faces = predictor.faces(photo_HxWx3, [box, box, ...])  # several faces of one photo

A box is the face's 68-landmark bounding box [x0, y0, x1, y1] in photo pixels (the evaluation
protocol's box; `predict.boxes` maps detector boxes to it). Each face is cropped as the real-data
readers crop (`data.crops`: a square of `box_scale` x the box's longer side around its centre,
zero-padded, resized to the network's size), and the crops go through one jitted function
(`core.fit_crops`) in batches padded to a power of two, so a handful of compilations serve any
number of faces.

Per face (NumPy): `box`, `landmarks_68` (68, 2) photo pixels (x right, y down, 0-based),
`pose` (6,) the paper's [r_x, r_y, r_z, s, t_x, t_y] (Eq. 2) for the *photo's* normalised
coordinates (`geometry.projection`: centre 0, half the shorter side 1, y up), `pitch_yaw_roll_deg`
= degrees of (r_x, r_y, r_z) (pitch > 0: looking down; yaw > 0: turned to the subject's left,
nose toward the image's right; roll > 0: counter-clockwise in the image), `pose_para` (7,)
300W-LP's `Pose_Para` for the photo (meaningful for a model in the BFM's raw units:
`mm.model` `offset_3`, `unit_scale`), `alpha` (K+E,), `vertices_px` (V, 3) (x, y photo pixels,
depth toward the viewer in pixels), `confidence` (reprojection error over the detected
vertices in NME units; lower is better), `detected` (fraction of the C selected vertices the
DAFI shows), `failure`, and for pictures the `crop`, its `dafi` and `mask`.

Landmarks from another detector (Eq. 8's second CPR): `landmarks=` per call ((F, 68, 2) photo
pixels, iBUG 68 order), or a callable `landmarks(photo, boxes) -> (F, 68, 2)` given to the
constructor; they replace the landmark network's points in the fusion branch.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from cprfa_jax import cli, decode, workdirs
from cprfa_jax.batching import padded_batches
from cprfa_jax.data import crops
from cprfa_jax.geometry import projection
from cprfa_jax.nets import build
from cprfa_jax.predict import core

BOX_SCALE = 2.0          # the framing every data set is built with (`data.real`, `data.sampler`)
STAGES = ("capu", "cpr_h", "cpr")   # the most complete trained regressor is used


def trained_stage(workdir: str) -> str:
  """The most complete regressor stage trained in a workdir (CPRFA, then CPR-H, then CPR(C))."""
  for stage in STAGES:
    if workdirs.is_trained(workdir, stage):
      return stage
  raise FileNotFoundError(f"{workdir}: no trained regressor (stages {', '.join(STAGES)}); "
                          f"train the pipeline first: python train.py --config ... --workdir {workdir}")


class Predictor:
  """See the module docstring. `params`: {"dafi", "landmarks" (None without fusion),
  "regressor"} parameters; `selection`: {"selected", "layout"} (`dafi/selection.npz`)."""

  def __init__(self, config, model3d, params: dict, selection: dict, stage: str = "capu",
               landmarks=None, box_scale: float = BOX_SCALE, max_batch: int = 32):
    if stage not in build.VARIANTS:
      raise ValueError(f"stage {stage!r}: choose from {sorted(build.VARIANTS)}")
    fused = build.VARIANTS[stage]["fusion"]
    if fused and params.get("landmarks") is None:
      raise ValueError(f"stage {stage} fuses landmarks: params['landmarks'] is needed")
    self.config, self.model3d, self.stage = config, model3d, stage
    self.size = int(config.data.image_size)
    self.box_scale, self.max_batch, self.landmark_fn = box_scale, max_batch, landmarks
    self.settings = core.Settings(config=config, stage=stage)
    self.weights = core.Weights(
        unet=params["dafi"], landmarks=params["landmarks"] if fused else None,
        regressor=params["regressor"], model3d=model3d,
        grid=decode.build_pncc_grid(np.asarray(model3d.pncc_Vx3), config.cpr.match_dist),
        selected_C=jnp.asarray(selection["selected"]), layout_3xN=jnp.asarray(selection["layout"]))
    self._fit = jax.jit(functools.partial(core.fit_crops, self.settings))

  @classmethod
  def from_workdir(cls, config, workdir: str, model3d=None, stage: str | None = None, **kwargs):
    """The pipeline `train.py --config ... --workdir workdir` trained (the config must be the
    one it was trained with: a mismatch in a network's sizes is refused by name)."""
    model3d = cli.load_model(config) if model3d is None else model3d
    stage = stage or trained_stage(workdir)
    fused = build.VARIANTS[stage]["fusion"]
    params = {"dafi": workdirs.params_of(config, workdir, "dafi"),
              "regressor": workdirs.regressor_params(config, workdir, stage)[0],
              "landmarks": workdirs.params_of(config, workdir, "landmarks") if fused else None}
    selection = workdirs.read_selection(workdir, config.cpr.num_selected)
    return cls(config, model3d, params, selection, stage, **kwargs)

  # -- crops ----------------------------------------------------------------------------------
  def crop(self, photo_HxWx3, boxes_Fx4):
    """The network's inputs for the faces in `boxes_Fx4` of one photo: crops (F, S, S, 3)
    uint8, k (F,), b (F, 2) with crop pixel = k * photo pixel + b."""
    images, ks, bs = [], [], []
    for box in np.asarray(boxes_Fx4, np.float64).reshape(-1, 4):
      x0, y0, side = crops.crop_box(box.reshape(2, 2), self.box_scale)
      images.append(crops.crop_resize(photo_HxWx3, x0, y0, side, self.size))
      k, b = crops.crop_affine(x0, y0, side, self.size)
      ks.append(k)
      bs.append(b)
    return (np.stack(images) if images else np.zeros((0, self.size, self.size, 3), np.uint8),
            np.asarray(ks, np.float32), np.asarray(bs, np.float32).reshape(-1, 2))

  def fit_crops(self, crops_FxSxSx3, k_F, b_Fx2, landmarks_Fx68x2=None) -> dict:
    """`core.fit_crops` over any number of crops, in padded batches; NumPy arrays (F, ...).
    landmarks (F, 68, 2) photo pixels; rows of NaN (or None for all) use the landmark network."""
    n = len(crops_FxSxSx3)
    lm = (np.full((n, 68, 2), np.nan, np.float32) if landmarks_Fx68x2 is None
          else np.asarray(landmarks_Fx68x2, np.float32).reshape(n, 68, 2))
    given = np.isfinite(lm).all(axis=(1, 2))     # a NaN row: no landmarks given for that face
    lm = np.where(given[:, None, None], lm, 0.0).astype(np.float32)
    parts = []
    for lo, hi, idx in padded_batches(n, self.max_batch, pow2=True):   # pad with the last face
      out = self._fit(self.weights, crops_FxSxSx3[idx], k_F[idx], b_Fx2[idx], lm[idx], given[idx])
      parts.append({key: np.asarray(v)[:hi - lo] for key, v in out.items()})
    if not parts:
      return {}
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

  # -- faces ----------------------------------------------------------------------------------
  def faces(self, photo_HxWx3, boxes_Fx4, landmarks=None) -> list[dict]:
    """Every face of one photo, in box order (module docstring)."""
    photo = np.asarray(photo_HxWx3)
    boxes = np.asarray(boxes_Fx4, np.float64).reshape(-1, 4)
    if landmarks is None and self.landmark_fn is not None and len(boxes):
      landmarks = self.landmark_fn(photo, boxes)
    crops_F, k, b = self.crop(photo, boxes)
    out = self.fit_crops(crops_F, k, b, landmarks)
    return [self.face(photo.shape[:2], boxes[i], crops_F[i], k[i], b[i],
                       {key: v[i] for key, v in out.items()}) for i in range(len(boxes))]

  def __call__(self, images_BxHxWx3, boxes_Bx4, landmarks=None) -> list[dict]:
    """One face per image: images uint8 (B, H, W, 3), boxes (B, 4), landmarks (B, 68, 2) or
    None."""
    images = np.asarray(images_BxHxWx3)
    boxes = np.asarray(boxes_Bx4, np.float64).reshape(-1, 4)
    if len(images) != len(boxes):
      raise ValueError(f"{len(images)} images but {len(boxes)} boxes: give one box per image")
    crops_F, ks, bs = zip(*(self.crop(im, bx[None]) for im, bx in zip(images, boxes)))
    crops_F, k, b = np.concatenate(crops_F), np.concatenate(ks), np.concatenate(bs)
    out = self.fit_crops(crops_F, k, b, landmarks)
    return [self.face(images.shape[1:3], boxes[i], crops_F[i], k[i], b[i],
                       {key: v[i] for key, v in out.items()}) for i in range(len(boxes))]

  def face(self, photo_hw, box, crop, k, b, out) -> dict:
    """One face's dict (module docstring) from its row of `fit_crops`'s outputs."""
    pose = photo_pose(out["pose"], self.size, float(k), b, photo_hw)
    pose_para = np.asarray(projection.pose_para_from_pose(
        pose, self.model3d.offset_3, self.model3d.unit_scale, photo_hw))
    return {"box": np.asarray(box, np.float64), "landmarks_68": out["landmarks_px"],
            "pose": pose, "pitch_yaw_roll_deg": np.degrees(pose[:3]), "pose_para": pose_para,
            "alpha": out["alpha"], "vertices_px": out["vertices_px"],
            "confidence": float(out["confidence"]), "detected": float(out["detected"]),
            "failure": bool(out["failure"]), "crop": crop, "dafi": out["dafi"],
            "mask": out["mask"]}


def photo_pose(pose_crop_6, size: int, k: float, b_2, photo_hw) -> np.ndarray:
  """The crop's pose (Eq. 2 in the crop's normalised coordinates) for the whole photo: the
  inverse of `data.crops.crop_pose` (crop pixel q = k p + b <=> p = q / k - b / k)."""
  return crops.crop_pose(pose_crop_6, (size, size), 1.0 / k, -np.asarray(b_2, np.float64) / k,
                        tuple(photo_hw)).astype(np.float32)
