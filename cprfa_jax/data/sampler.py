"""Synthetic in-the-wild faces with exact ground truth: the project's stand-in for 300W-LP,
AFLW2000-3D and COFW, none of which can be downloaded here.

An example is a pure function of (model, config, seed): identity and expression from the
model's unit-variance priors, yaw over [-90, 90] degrees (uniform, or balanced over the three
|yaw| bins of Tables 1-2 for test sets), pitch and roll within +-30 degrees, framing jitter,
random skin and light (rendered in JAX, `cprfa_jax.render`), then on the host: a random
background, occluders that hide face pixels in the image *and* in the ground-truth mask,
and blur, noise and colour jitter (`data.wild`).

Framing follows `data.real`'s crop rule, so synthetic and real examples look alike to the
networks: the posed 68-landmark box is centred and its longer side is 1/box_scale of the image
side (with box_scale = 2, a frontal face is half the image wide, where p0 = [0,0,0,1,0,0] of
§2.3 puts the mean face).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from cprfa_jax import render
from cprfa_jax.geometry import projection
from cprfa_jax.mm import head as head_lib
from cprfa_jax.mm.model import MorphableModel, shape
from cprfa_jax.data import wild

OCCLUSION = {  # (probability of any occluder, (min, max) occluders when there are some)
    "none": (0.0, (0, 0)),
    "mild": (0.35, (1, 1)),
    "heavy": (1.0, (1, 3)),
}


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
  image_size: int = 128
  max_yaw: float = 90.0
  max_pitch: float = 30.0
  max_roll: float = 30.0
  balanced_yaw: bool = False      # cycle through the |yaw| bins [0,30], (30,60], (60,90]
  id_scale: float = 1.0           # std of the identity coefficients
  exp_scale: float = 0.7          # std of the expression coefficients
  box_scale: float = 2.0          # image side / longer side of the landmark box (data.real)
  scale_jitter: float = 0.1       # log-uniform +- on the framing scale
  shift_jitter: float = 0.06      # uniform +- on the framing centre, normalised units
  occlusion: str = "mild"         # none | mild | heavy
  photometric: float = 1.0        # strength of blur, noise and colour jitter
  head: bool = False              # render the rest of the head around the face (`mm.head`)

  def __post_init__(self):
    if self.occlusion not in OCCLUSION:
      raise ValueError(f"occlusion={self.occlusion!r}: use one of {sorted(OCCLUSION)}")
    if not 32 <= self.image_size <= 512:
      raise ValueError(f"image_size={self.image_size}: the renderer supports 32 to 512 px")


def draw_params(rng: np.random.Generator, model: MorphableModel, cfg: SamplerConfig, index: int):
  """Host-side random parameters of one example (everything but albedo and light)."""
  if cfg.balanced_yaw:
    lo = 30.0 * (index % 3)
    mag = rng.uniform(lo, min(lo + 30.0, cfg.max_yaw))
    yaw = mag * rng.choice([-1.0, 1.0])
  else:
    yaw = rng.uniform(-cfg.max_yaw, cfg.max_yaw)
  return {
      "alpha_id": (cfg.id_scale * rng.standard_normal(model.num_id)).astype(np.float32),
      "alpha_exp": np.clip(cfg.exp_scale * rng.standard_normal(model.num_exp), -3, 3).astype(np.float32),
      "angles_deg": np.array([rng.uniform(-cfg.max_pitch, cfg.max_pitch), yaw,
                              rng.uniform(-cfg.max_roll, cfg.max_roll)], np.float32),
      "scale": float(np.exp(rng.uniform(-cfg.scale_jitter, cfg.scale_jitter))),
      "shift": rng.uniform(-cfg.shift_jitter, cfg.shift_jitter, 2),
  }


def frame_pose(landmarks_68x3, angles_deg, box_scale, scale=1.0, shift=(0.0, 0.0)):
  """pose_6 that rotates by the angles and frames the landmark box as `data.real` crops.

  In normalised coordinates the image side is 2, so the box's longer side becomes 2/box_scale.
  Pure jnp: vmap-able.
  """
  angles = jnp.radians(jnp.asarray(angles_deg, jnp.float32))
  pose = jnp.concatenate([angles, jnp.array([1.0, 0.0, 0.0], jnp.float32)])
  y = projection.project(landmarks_68x3, pose)
  lo, hi = y.min(0), y.max(0)
  s = scale * (2.0 / box_scale) / jnp.maximum((hi - lo).max(), 1e-6)
  return pose.at[3].set(s).at[4:6].set(-s * 0.5 * (lo + hi) + jnp.asarray(shift, jnp.float32))


@functools.partial(jax.jit, static_argnames=("hw",))
def _frame_batch(verts_BxVx3, landmarks_68, angles_Bx3, scale_B, shift_Bx2, box_scale, hw):
  """Poses (B, 6), landmark pixels (B, 68, 2) and vertex depths (B, V) of a batch."""
  lm = verts_BxVx3[:, landmarks_68]
  pose = jax.vmap(frame_pose, in_axes=(0, 0, None, 0, 0))(lm, angles_Bx3, box_scale, scale_B,
                                                         shift_Bx2)
  cam = jax.vmap(projection.camera_points)(verts_BxVx3, pose)
  return pose, projection.to_pixels(cam[:, landmarks_68, :2], hw), cam[..., 2]


@jax.jit
def _shapes_and_looks(model, alpha_id_BxK, alpha_exp_BxE, keys_B, regions, head=None):
  """Face vertices, albedo and light of a batch; with a `head`, its vertices and albedo too
  (their keys fold in from each example's, so face-only renders keep their random streams)."""
  verts = jax.vmap(shape, in_axes=(None, 0, 0))(model, alpha_id_BxK, alpha_exp_BxE)

  def look(key, face_Vx3):
    k1, k2 = jax.random.split(key)
    params = render.random_albedo_params(k1, model.num_vertices)
    albedo = render.vertex_albedo(regions, params)
    if head is None:
      return albedo, render.random_light(k2), None
    kh = jax.random.split(jax.random.fold_in(key, 1), 2)
    head_v = head_lib.head_vertices(head, face_Vx3, head_lib.random_head_shape(kh[0]))
    head_a = render.head_albedo(head, albedo, params.skin_3, render.random_head_look(kh[1]),
                                head_v)
    return albedo, render.random_light(k2), (head_v, head_a)

  albedo, light, head_out = jax.vmap(look)(keys_B, verts)
  return verts, albedo, light, head_out


_PER_MODEL = {}


def _per_model(model, what, build):
  """What a model needs once (albedo regions, head geometry), cached per model object (models
  are not hashable)."""
  entry = _PER_MODEL.get((id(model), what))
  if entry is None or entry[0] is not model:
    entry = _PER_MODEL[(id(model), what)] = (model, build(model))
  return entry[1]


def _regions(model):
  return _per_model(model, "regions", render.model_regions)


def generate(model: MorphableModel, seeds, cfg: SamplerConfig, stream: int = 0):
  """The examples of the given seeds (a list of schema dicts, `data.schema`), rendered as one
  batch. `stream` separates data sets that share seeds (train / reference / test sets)."""
  seeds = [int(s) for s in seeds]
  hw = (cfg.image_size, cfg.image_size)
  rngs = [np.random.default_rng([stream, s]) for s in seeds]
  params = [draw_params(r, model, cfg, s) for r, s in zip(rngs, seeds)]
  keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(stream), s))(jnp.asarray(seeds))
  head = _per_model(model, "head", head_lib.model_head) if cfg.head else None
  verts, albedo, light, head_out = _shapes_and_looks(
      model, jnp.asarray(np.stack([p["alpha_id"] for p in params])),
      jnp.asarray(np.stack([p["alpha_exp"] for p in params])), keys, _regions(model), head)
  lm_idx = np.asarray(model.landmarks_68)
  surround, tri = None, np.asarray(model.triangles_Tx3)
  all_verts = verts
  if head is not None:
    surround = render.Surround(head.triangles_Tx3, *head_out)
    tri = np.concatenate([tri, np.asarray(head.triangles_Tx3)])
    all_verts = jnp.concatenate([verts, head_out[0]], 1)
  # Depths of every vertex, the head's too: a landmark behind an ear is not self-visible.
  poses, lm_pix, vert_z = jax.device_get(_frame_batch(
      all_verts, model.landmarks_68, np.stack([p["angles_deg"] for p in params]),
      np.array([p["scale"] for p in params], np.float32),
      np.stack([p["shift"] for p in params]).astype(np.float32), cfg.box_scale, hw))
  out = jax.device_get(render.render_batch(model, verts, poses, hw, light=light, albedo=albedo,
                                           surround=surround))
  examples = []
  for i, (rng, p) in enumerate(zip(rngs, params)):
    lm_px = lm_pix[i].astype(np.float32)
    self_visible = depth_visible(np.concatenate([lm_px, vert_z[i][lm_idx, None]], -1),
                                 out.tri_id[i], out.bary[i], tri, vert_z[i],
                                 DEPTH_TOL * float(poses[i][3]))
    image, mask, occluded = _in_the_wild(rng, out.rgb[i], out.mask[i], lm_px, cfg,
                                         out.tri_id[i] >= 0)
    inside = np.all((lm_px >= 0) & (lm_px <= cfg.image_size - 1), -1)
    r, c = (np.clip(np.round(lm_px[:, k]).astype(int), 0, cfg.image_size - 1) for k in (1, 0))
    examples.append({
        "image": (image * 255.0 + 0.5).astype(np.uint8),
        "dafi": np.where(mask[..., None], out.dafi[i], 0.0).astype(np.float32),
        "mask": mask,
        "alpha_id": p["alpha_id"], "alpha_exp": p["alpha_exp"],
        "pose": poses[i].astype(np.float32),
        "landmarks": lm_px,
        "landmarks_visible": self_visible & inside & ~occluded[r, c],
        "yaw": np.float32(p["angles_deg"][1]),
    })
  return examples


# A point counts as visible if it is at most this far (model units, times the pose's scale)
# behind the rendered surface at its pixel: about 3 px at 128 px, which absorbs the depth change
# across one pixel of a slanted surface but not the nose in front of a far cheek.
DEPTH_TOL = 0.05


def depth_visible(pix_Nx3, tri_id_HxW, bary_HxWx3, triangles_Tx3, vert_z_V, tol) -> np.ndarray:
  """Per-point visibility by a depth test against the z-buffer. pix_Nx3: pixel x, y and camera
  depth (toward the camera) of N surface points; vert_z_V: camera depth of every vertex, to
  interpolate the visible surface's depth at each point's pixel. More reliable than "belongs to
  a visible triangle" when triangles are smaller than pixels and win no pixel centre."""
  h, w = tri_id_HxW.shape
  r = np.clip(np.round(pix_Nx3[:, 1]).astype(int), 0, h - 1)
  c = np.clip(np.round(pix_Nx3[:, 0]).astype(int), 0, w - 1)
  t = np.asarray(tri_id_HxW)[r, c]
  corners = np.asarray(triangles_Tx3)[np.maximum(t, 0)]             # (N, 3) vertex ids
  surface_z = (np.asarray(bary_HxWx3)[r, c] * np.asarray(vert_z_V)[corners]).sum(-1)
  return (t >= 0) & (pix_Nx3[:, 2] >= surface_z - tol)


def _in_the_wild(rng, face_rgb, face_mask, landmarks_68x2, cfg: SamplerConfig, foreground):
  """Background, occluders, photometric noise. Returns (image, visible mask, occluder mask).
  foreground: every rendered pixel (face and head)."""
  hw = face_mask.shape
  p_any, (lo, hi) = OCCLUSION[cfg.occlusion]
  occluders = []
  if rng.random() < p_any:
    occluders = [wild.random_occluder(rng, hw, landmarks_68x2) for _ in range(rng.integers(lo, hi + 1))]
  image, visible = wild.composite(np.asarray(face_rgb), np.asarray(face_mask),
                                  wild.random_background(rng, hw), occluders,
                                  np.asarray(foreground))
  occluded = np.zeros(hw, bool)
  for _, alpha in occluders:
    occluded |= alpha
  return wild.photometric(rng, image, cfg.photometric), visible, occluded
