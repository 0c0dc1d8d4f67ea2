"""Procedural face albedo and Lambertian + ambient lighting.

The albedo is per vertex and built from the model's own 68 landmarks (iBUG order) on its mean
shape, so it works for any morphable model: skin with smooth and fine noise, eyebrows along
landmarks 17-26, lips inside the outer lip contour 48-59 (and a dark mouth inside 60-67), eyes
inside 36-41 / 42-47 with sclera, iris and pupil. `face_regions` does the geometry once per
model on the host; `vertex_albedo` colours it per example (jit / vmap-able), so a data engine
can draw new skin, brow, lip and iris colours for every image.

Lights live in the camera frame of `geometry.camera_points` (x right, y up, z toward the
camera): `direction_3` points from the face toward the light.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cprfa_jax.mm import head as head_lib

NUM_NOISE = 16  # smooth-noise basis functions per model


class FaceRegions(NamedTuple):
  """Soft per-vertex region weights in [0, 1] and a smooth noise basis, all (V,) or (V, F)."""
  brow_V: jnp.ndarray
  lip_V: jnp.ndarray
  mouth_V: jnp.ndarray
  sclera_V: jnp.ndarray
  iris_V: jnp.ndarray
  pupil_V: jnp.ndarray
  noise_VxF: jnp.ndarray


class AlbedoParams(NamedTuple):
  skin_3: jnp.ndarray
  brow_3: jnp.ndarray
  lip_3: jnp.ndarray
  iris_3: jnp.ndarray
  noise_Fx3: jnp.ndarray   # smooth-noise coefficients per colour channel
  fine_V: jnp.ndarray      # per-vertex multiplicative grain


class Light(NamedTuple):
  direction_3: jnp.ndarray  # unit vector toward the light, camera frame
  colour_3: jnp.ndarray     # directional light RGB
  ambient_3: jnp.ndarray    # ambient light RGB


# ---------------------------------------------------------------------------------- geometry

def _segment_distances(p_Px2, a_Sx2, b_Sx2):
  """Distance from each point to each of S segments: (P, S)."""
  ab = b_Sx2 - a_Sx2
  t = np.clip(((p_Px2[:, None] - a_Sx2) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)
  return np.linalg.norm(p_Px2[:, None] - (a_Sx2 + t[..., None] * ab), axis=-1)


def _polygon_sdf(p_Px2, poly_Kx2):
  """Signed distance to a closed polygon, negative inside (even-odd rule)."""
  a, b = poly_Kx2, np.roll(poly_Kx2, -1, axis=0)
  d = _segment_distances(p_Px2, a, b).min(1)
  x, y = p_Px2[:, :1], p_Px2[:, 1:]
  dy = np.where(b[:, 1] == a[:, 1], 1e-12, b[:, 1] - a[:, 1])
  x_cross = a[:, 0] + (y - a[:, 1]) * (b[:, 0] - a[:, 0]) / dy
  crosses = ((a[:, 1] > y) != (b[:, 1] > y)) & (x < x_cross)
  inside = crosses.sum(1) % 2 == 1
  return np.where(inside, -d, d)


def _soft(sdf, edge):
  """1 well inside (sdf < -edge), 0 outside, a linear ramp across the boundary."""
  return np.clip(0.5 - sdf / (2 * edge), 0.0, 1.0)


def face_regions(mean_Vx3, landmarks_68, seed: int = 0) -> FaceRegions:
  """Host side, once per model. mean_Vx3 in the canonical frame (`mm.model`: unit = jaw width,
  y up, z toward the camera), landmarks_68 vertex indices in iBUG order."""
  x = np.asarray(mean_Vx3, np.float64)
  lm = x[np.asarray(landmarks_68)]
  xy = x[:, :2]
  near = lambda idx, depth: np.abs(x[:, 2] - lm[idx, 2].mean()) < depth  # front surface only
  edge = 0.006  # soft-edge half width: about a quarter of a typical face-mesh edge

  brow = np.zeros(len(x))
  for idx in (np.arange(17, 22), np.arange(22, 27)):
    # iBUG brow points run along the brow's upper half: the band sits a little below them,
    # thick at the inner end and tapering to the tail.
    pts = lm[idx, :2] - [0.0, 0.012]
    if abs(pts[0, 0]) > abs(pts[-1, 0]):
      pts = pts[::-1]
    half_S = np.linspace(0.03, 0.017, len(idx) - 1)
    d = (_segment_distances(xy, pts[:-1], pts[1:]) - half_S).min(1)
    brow = np.maximum(brow, _soft(d, edge) * near(idx, 0.12))
  outer, inner = _polygon_sdf(xy, lm[48:60, :2]), _polygon_sdf(xy, lm[60:68, :2])
  lip_front = near(np.arange(48, 68), 0.12)
  lip = _soft(outer, edge) * lip_front
  mouth = _soft(inner, edge) * lip_front
  sclera = np.zeros(len(x))
  iris = np.zeros(len(x))
  pupil = np.zeros(len(x))
  for idx in (np.arange(36, 42), np.arange(42, 48)):
    pts = lm[idx, :2]
    inside = _soft(_polygon_sdf(xy, pts), edge) * near(idx, 0.06)
    centre = pts.mean(0)
    width = np.linalg.norm(pts[3] - pts[0])
    r = np.linalg.norm(xy - centre, axis=1)
    sclera = np.maximum(sclera, inside)
    iris = np.maximum(iris, inside * _soft(r - 0.21 * width, edge))
    pupil = np.maximum(pupil, inside * _soft(r - 0.08 * width, edge))
  # Smooth noise: random Fourier features of the canonical position, about 3 to 10 bumps
  # across the face, each scaled to unit standard deviation.
  rng = np.random.default_rng(seed)
  freq = rng.normal(0.0, 1.0, (3, NUM_NOISE)) * rng.uniform(4.0, 14.0, NUM_NOISE)
  noise = np.sin(x @ freq + rng.uniform(0, 2 * np.pi, NUM_NOISE))
  noise /= np.maximum(noise.std(0), 1e-6)
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  return FaceRegions(*(f32(r) for r in (brow, lip, mouth, sclera, iris, pupil, noise)))


def model_regions(model, seed: int = 0) -> FaceRegions:
  """`face_regions` of a `MorphableModel`."""
  return face_regions(np.asarray(model.mean_Vx3), np.asarray(model.landmarks_68), seed)


# ---------------------------------------------------------------------------------- colours

def default_albedo_params(num_vertices: int) -> AlbedoParams:
  """A medium skin tone, dark-brown brows, brown eyes, mild noise."""
  return AlbedoParams(skin_3=jnp.array([0.78, 0.57, 0.46]), brow_3=jnp.array([0.2, 0.13, 0.09]),
                      lip_3=jnp.array([0.66, 0.32, 0.32]), iris_3=jnp.array([0.33, 0.2, 0.11]),
                      noise_Fx3=jnp.full((NUM_NOISE, 3), 0.012), fine_V=jnp.zeros(num_vertices))


def random_albedo_params(key, num_vertices: int) -> AlbedoParams:
  """Skin from pale to dark with a random tint, brows from black to blond but darker than
  the skin, lips redder than the skin, brown / hazel / green / blue / grey irises."""
  k = jax.random.split(key, 8)
  u = jax.random.uniform
  tone = u(k[0])
  skin = (1 - tone) * jnp.array([0.93, 0.76, 0.66]) + tone * jnp.array([0.33, 0.21, 0.15])
  skin = jnp.clip(skin * (1 + 0.06 * jax.random.normal(k[1], (3,))), 0.05, 1.0)
  hair = jnp.array([[0.05, 0.04, 0.03], [0.2, 0.13, 0.08], [0.4, 0.28, 0.16], [0.6, 0.48, 0.3],
                    [0.45, 0.2, 0.1]])
  brow = jnp.minimum(hair[jax.random.randint(k[2], (), 0, len(hair))], 0.6 * skin)
  lip = jnp.clip(skin * jnp.array([0.95, 0.6, 0.62]) * u(k[3], (), minval=0.75, maxval=1.05), 0, 1)
  irises = jnp.array([[0.3, 0.18, 0.09], [0.15, 0.09, 0.05], [0.42, 0.35, 0.2], [0.25, 0.38, 0.25],
                      [0.3, 0.45, 0.65], [0.45, 0.48, 0.5]])
  iris = irises[jax.random.randint(k[4], (), 0, len(irises))]
  # Smooth blotches mostly in brightness (std up to 6%), with a little colour (1.5%).
  k6a, k6b = jax.random.split(k[6])
  noise = (0.06 * u(k[5]) * jax.random.normal(k6a, (NUM_NOISE, 1))
           + 0.015 * jax.random.normal(k6b, (NUM_NOISE, 3))) / np.sqrt(NUM_NOISE)
  fine = 0.04 * u(k[7]) * jax.random.normal(jax.random.fold_in(k[7], 1), (num_vertices,))
  return AlbedoParams(skin, brow, lip, iris, noise, fine)


def vertex_albedo(regions: FaceRegions, params: AlbedoParams) -> jnp.ndarray:
  """Per-vertex RGB albedo (V, 3) in [0, 1]."""
  lerp = lambda c, target, wt: c + wt[:, None] * (target - c)
  skin = params.skin_3 * (1.0 + regions.noise_VxF @ params.noise_Fx3)
  c = lerp(skin, params.brow_3, 0.85 * regions.brow_V)
  c = lerp(c, params.lip_3, regions.lip_V)
  c = lerp(c, jnp.array([0.25, 0.07, 0.07]), regions.mouth_V)
  c = lerp(c, jnp.array([0.88, 0.86, 0.83]), regions.sclera_V)
  c = lerp(c, params.iris_3, regions.iris_V)
  c = lerp(c, jnp.array([0.03, 0.03, 0.03]), regions.pupil_V)
  return jnp.clip(c * (1.0 + params.fine_V[:, None]), 0.0, 1.0)


class HeadLook(NamedTuple):
  """Colours of the head around the face (`head_albedo`)."""
  cloth_3: jnp.ndarray      # clothing RGB
  neckline: jnp.ndarray     # (,) height of the collar below the skull centre (canonical units)


def default_head_look() -> HeadLook:
  return HeadLook(jnp.array([0.2, 0.25, 0.35]), jnp.float32(-1.3))


def random_head_look(key) -> HeadLook:
  """Clothing from dark to light in any hue, a collar from the neck's base to a low neckline."""
  k = jax.random.split(key, 3)
  hue = jax.random.uniform(k[0], (3,))
  bright = jax.random.uniform(k[1], (), minval=0.05, maxval=0.9)
  return HeadLook(jnp.clip(bright * (0.5 + hue), 0.0, 1.0),
                  jax.random.uniform(k[2], (), minval=-1.45, maxval=-1.2))


def head_albedo(head, face_albedo_Vx3, skin_3, look: HeadLook, head_verts_Hx3) -> jnp.ndarray:
  """(H, 3) albedo of `mm.head`'s vertices: the cranium's rings start with the face boundary's
  own colours and fade to the plain skin tone (no seam at the join), ears a little redder, the
  neck a little darker, clothing below the neckline. Pure jnp (jit / vmap-able)."""
  skin = jnp.asarray(skin_3, jnp.float32)
  edge = face_albedo_Vx3[head.loop_L]                              # (L, 3)
  fade = jnp.clip(head.ring_t_R / 0.3, 0.0, 1.0)[:, None, None]    # (R, 1, 1)
  rings = (edge + fade * (skin - edge)).reshape(-1, 3)
  rest = jnp.broadcast_to(skin, (head.part_H.shape[0] - rings.shape[0], 3))
  colour = jnp.concatenate([rings, rest])
  part = head.part_H
  colour = jnp.where((part == head_lib.EAR)[:, None], colour * jnp.array([1.0, 0.9, 0.88]), colour)
  colour = jnp.where((part >= head_lib.NECK)[:, None], colour * 0.93, colour)
  below = (head_verts_Hx3[:, 1] - head.centre_3[1]) < look.neckline
  return jnp.where(((part >= head_lib.NECK) & below)[:, None], look.cloth_3, colour)


# ---------------------------------------------------------------------------------- lights

def default_light() -> Light:
  """A white key light above and to the left of the camera, plus ambient."""
  d = jnp.array([-0.35, 0.45, 1.0])
  return Light(d / jnp.linalg.norm(d), jnp.full(3, 0.75), jnp.full(3, 0.3))


def random_light(key) -> Light:
  """Direction anywhere up to 75 degrees off the camera axis, warm to cool tints, key
  intensity 0.3-1.0 and ambient 0.1-0.5."""
  k = jax.random.split(key, 6)
  theta = jnp.radians(75.0) * jnp.sqrt(jax.random.uniform(k[0]))
  phi = jax.random.uniform(k[1], (), minval=0.0, maxval=2 * jnp.pi)
  d = jnp.stack([jnp.sin(theta) * jnp.cos(phi), jnp.sin(theta) * jnp.sin(phi), jnp.cos(theta)])
  tint = lambda kk: 1.0 + 0.12 * jax.random.normal(kk, (3,))
  colour = jax.random.uniform(k[2], (), minval=0.3, maxval=1.0) * tint(k[3])
  ambient = jax.random.uniform(k[4], (), minval=0.1, maxval=0.5) * tint(k[5])
  return Light(d, jnp.clip(colour, 0, 1.5), jnp.clip(ambient, 0, 1))


def lambert(albedo_Nx3, normal_Nx3, light: Light) -> jnp.ndarray:
  """albedo (ambient + colour max(0, n . l)) clipped to [0, 1], for (..., N, 3) albedo and
  camera-frame normals (not necessarily unit) and light fields that broadcast against them,
  e.g. (3,) or (B, 1, 3). Written per channel: XLA's CPU reductions over a trailing axis of 3
  were slow."""
  n = [normal_Nx3[..., i] for i in range(3)]
  norm = jnp.sqrt(jnp.maximum(n[0] * n[0] + n[1] * n[1] + n[2] * n[2], 1e-24))
  d = light.direction_3
  ndotl = jnp.maximum((n[0] * d[..., 0] + n[1] * d[..., 1] + n[2] * d[..., 2]) / norm, 0.0)
  return jnp.clip(albedo_Nx3 * (light.ambient_3 + light.colour_3 * ndotl[..., None]), 0.0, 1.0)
