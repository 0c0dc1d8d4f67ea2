"""The rest of a head around a morphable model's face: cranium, ears, neck and shoulders.

A 3DMM covers the face region only (as the BFM's does in 300W-LP); a render of that region alone
is a face-shaped patch on a background, which no photo is. `head_geometry` builds, once per
model and from its mean mesh and 68 landmarks alone (so it fits the procedural model, the SFM and
the BFM alike), a head that `head_vertices` places around every example's face:

* **cranium**: rings grown outward from the face mesh's boundary loop, each boundary vertex
  swept from its own direction (seen from the skull's centre) to the back of the head while its
  distance moves from the face's to a skull ellipsoid's. Ring 0 *is* the boundary, so the skin is
  joined without a seam (shared vertices, hence shared normals), and the head follows identity
  and expression: a wider face or an open jaw moves the boundary, and the rings with it;
* **ears**: a cupped, two-sided disc behind landmarks 0 and 16 (iBUG's contour points at the
  tragus), which they follow;
* **neck and shoulders**: a surface of revolution from inside the skull down past the frame.

Head triangles index the concatenated vertex array [face (V) | head (H)] and come after the
face's, so a renderer can tell face pixels (the DAFI and mask, §2.1) from head pixels by the
winning triangle's index alone. Everything is in the model's canonical frame (`mm.model`: unit
= the landmarks' x-extent, about the jaw width, ~0.14 m; y up, z toward the camera).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cprfa_jax import numerics

SKULL, EAR, NECK, TORSO = 0, 1, 2, 3   # part of each head vertex (`Head.part_H`)
NUM_RINGS = 10          # rings between the face boundary and the back of the head
EAR_RADII, EAR_ANGLES = 5, 18
NECK_ANGLES = 32
NECK_Z = -0.16          # the neck's axis behind the skull centre: the throat ~45 mm behind the chin
# An ear's centre from its landmark (iBUG 0 / 16, on the contour in front of the tragus).
# Its root lies on the head's silhouette line of a frontal view (behind it, nothing of the face
# it could hide there): a bald frontal head's face pixels are the face-only render's.
EAR_CENTRE = np.array([0.0, -0.05, -0.25])
# (side, inner) of the four ear surfaces: a disc is seen from both sides, and back-face culling
# needs a surface wound each way (offset 0.004 toward the head, so they never tie in depth).
EAR_COPIES = ((1.0, False), (1.0, True), (-1.0, False), (-1.0, True))
# Neck and torso: (height below the skull centre, half-width, half-depth), canonical units.
# A neck ~0.8 jaw widths wide, shoulders ~2.5 wide, the trapezius sloping between them.
# Narrower behind the jaw than below it, so that no face's jaw is pierced from behind.
NECK_PROFILE = ((-0.22, 0.02, 0.02), (-0.27, 0.26, 0.24), (-0.32, 0.30, 0.28),
                (-0.75, 0.31, 0.29), (-1.0, 0.37, 0.33), (-1.25, 0.43, 0.36), (-1.38, 0.62, 0.42),
                (-1.5, 0.95, 0.5), (-1.62, 1.18, 0.55), (-1.8, 1.26, 0.57), (-2.1, 1.28, 0.58),
                (-2.6, 1.28, 0.58))


class Head(NamedTuple):
  """A model's head geometry (arrays only: a pytree that jit and vmap take as an argument)."""
  loop_L: jnp.ndarray        # (L,) face boundary vertices; loop[i] -> loop[i+1] as in its triangle
  ring_t_R: jnp.ndarray      # (R,) fraction of the sweep to the back of the head per ring
  centre_3: jnp.ndarray      # skull centre (canonical frame)
  axes_3: jnp.ndarray        # skull ellipsoid's semi-axes
  mean_radius: jnp.ndarray   # (,) mean boundary distance from the centre on the mean face
  ear_anchor_2: jnp.ndarray  # (2,) landmark vertices the ears follow (iBUG 0 and 16)
  ear_Ex3: jnp.ndarray       # (E,) one ear (on the subject's right, x < 0), offset from its anchor
  neck_Nx3: jnp.ndarray      # neck and torso vertices, relative to the skull centre
  triangles_Tx3: jnp.ndarray  # head triangles over [face V | head H]
  part_H: jnp.ndarray        # (H,) SKULL / EAR / NECK / TORSO


class HeadShape(NamedTuple):
  """Per-example variation of the head (`random_head_shape`)."""
  skull_3: jnp.ndarray       # scale of the skull's semi-axes
  ear: jnp.ndarray           # (,) ear size
  ear_out: jnp.ndarray       # (,) how far the ears stand out
  neck: jnp.ndarray          # (,) neck width
  shoulders: jnp.ndarray     # (,) shoulder width


def boundary_loop(triangles_Tx3) -> np.ndarray:
  """The longest closed loop of boundary edges (edges of one triangle only), each edge directed
  as in its triangle. Raises ValueError for a mesh without one."""
  tri = np.asarray(triangles_Tx3, np.int64)
  directed = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
  present = set(map(tuple, directed))
  nxt = {}
  for a, b in directed:
    if (b, a) not in present:
      nxt[int(a)] = int(b)
  seen, best = set(), []
  for start in nxt:
    if start in seen:
      continue
    loop, v = [], start
    while v not in seen and v in nxt:
      seen.add(v)
      loop.append(v)
      v = nxt[v]
    if v == start and len(loop) > len(best):
      best = loop
  if len(best) < 3:
    raise ValueError("the face mesh has no boundary loop: a head needs an open face region")
  return np.asarray(best, np.int32)


def _ear_template():
  """(E, 3) points and (F, 3) triangles of one ear around its own centre, on the subject's right
  (outward = -x): a cupped ellipse, 60 x 30 mm, its back edge standing out from the head."""
  rho = np.linspace(0.0, 1.0, EAR_RADII + 1)[1:]
  phi = np.linspace(0.0, 2 * np.pi, EAR_ANGLES, endpoint=False)
  r, p = np.meshgrid(rho, phi, indexing="ij")
  # 0.08 in front of the centre (the root, at the tragus) and 0.13 behind it (the helix).
  z = r * np.cos(p) * np.where(np.cos(p) > 0, 0.08, 0.13)
  y = 0.21 * r * np.sin(p) * (1.0 - 0.15 * np.sin(p))
  back = np.clip(-z / 0.13, 0.0, 1.0)                 # 0 at the root (front), 1 at the back rim
  out = 0.025 + 0.07 * back - 0.018 * np.exp(-((r - 0.35) / 0.25) ** 2) \
        + 0.012 * np.exp(-((r - 0.92) / 0.08) ** 2)   # concha hollow, helix rim
  pts = np.concatenate([[[-0.005, 0.0, 0.0]], np.stack([-out, y, z], -1).reshape(-1, 3)])
  ring = lambda k: 1 + k * EAR_ANGLES + np.arange(EAR_ANGLES)
  tris = [np.stack([np.zeros(EAR_ANGLES, int), ring(0), np.roll(ring(0), -1)], -1)]
  for k in range(EAR_RADII - 1):
    a, b = ring(k), ring(k + 1)
    tris += [np.stack([a, b, np.roll(b, -1)], -1), np.stack([a, np.roll(b, -1), np.roll(a, -1)], -1)]
  return pts, np.concatenate(tris)


def _neck_template():
  """(N, 3) neck and torso points relative to the skull centre, and their (F, 3) triangles."""
  phi = np.linspace(0.0, 2 * np.pi, NECK_ANGLES, endpoint=False)
  prof = np.asarray(NECK_PROFILE)
  pts = np.stack([prof[:, None, 1] * np.cos(phi), np.broadcast_to(prof[:, None, 0], (len(prof), len(phi))),
                  NECK_Z + prof[:, None, 2] * np.sin(phi)], -1).reshape(-1, 3)
  n = NECK_ANGLES
  tris = []
  for k in range(len(prof) - 1):
    a, b = k * n + np.arange(n), (k + 1) * n + np.arange(n)
    tris += [np.stack([a, b, np.roll(b, -1)], -1), np.stack([a, np.roll(b, -1), np.roll(a, -1)], -1)]
  part = np.where(prof[:, 0] < -1.3, TORSO, NECK).repeat(n)
  return pts, np.concatenate(tris), part


def _orient_outward(pts_Nx3, tris_Fx3, inside_Fx3):
  """Triangles wound so their normals point away from `inside` (a point per triangle)."""
  a, b, c = (pts_Nx3[tris_Fx3[:, i]] for i in range(3))
  n = np.cross(b - a, c - a)
  flip = (n * ((a + b + c) / 3 - inside_Fx3)).sum(-1) < 0
  return np.where(flip[:, None], tris_Fx3[:, [0, 2, 1]], tris_Fx3)


def head_geometry(mean_Vx3, triangles_Tx3, landmarks_68) -> Head:
  """Host side, once per model: the head around the mean face (module docstring)."""
  mean = np.asarray(mean_Vx3, np.float64)
  lm = mean[np.asarray(landmarks_68)]
  v = len(mean)
  loop = boundary_loop(triangles_Tx3)
  eye_y = lm[36:48, 1].mean()
  nose_z = lm[30, 2]
  # A skull ~1.05 x 1.25 x 1.4 jaw widths (150 x 180 x 200 mm), its centre 0.1 above the eye
  # line and 0.75 behind the nose tip.
  centre = np.array([lm[:, 0].mean(), eye_y + 0.1, nose_z - 0.75])
  axes = np.array([0.53, 0.63, 0.68])
  mean_radius = np.linalg.norm(mean[loop] - centre, axis=-1).mean()
  ring_t = (np.arange(1, NUM_RINGS + 1) / (NUM_RINGS + 1)) ** 1.25
  l = len(loop)
  ring = lambda k: loop if k == 0 else v + (k - 1) * l + np.arange(l)
  pole = v + NUM_RINGS * l
  tris = []
  for k in range(NUM_RINGS):
    a, b = ring(k), ring(k + 1)
    a1, b1 = np.roll(a, -1), np.roll(b, -1)
    # The face's edge runs a -> a1; the head's triangle beside it runs a1 -> a (same winding).
    tris += [np.stack([a1, a, b], -1), np.stack([a1, b, b1], -1)]
  last = ring(NUM_RINGS)
  tris.append(np.stack([np.roll(last, -1), last, np.full(l, pole)], -1))
  skull_tris = np.concatenate(tris)
  h = NUM_RINGS * l + 1
  parts = [np.full(h, SKULL)]

  ear_pts, ear_tris = _ear_template()
  ear_pts = ear_pts + EAR_CENTRE
  anchor = np.asarray(landmarks_68)[[0, 16]]
  e = len(ear_pts)
  ear_tris_all = []
  for i, (sign, inner) in enumerate(EAR_COPIES):
    # Wound on the mean ear at its anchor: the outer copy's normals point away from the head
    # (the subject's right ear, sign +1, faces -x), the inner copy's toward it.
    at = mean[anchor[0 if sign > 0 else 1]] + ear_pts * [sign, 1, 1]
    pts = np.concatenate([np.zeros((v + h + i * e, 3)), at])
    toward_head = np.array([sign, 0.0, 0.0])
    inside = at[ear_tris].mean(1) + (-toward_head if inner else toward_head)
    ear_tris_all.append(_orient_outward(pts, ear_tris + v + h + i * e, inside))
  ear_tris_all = np.concatenate(ear_tris_all)
  parts.append(np.full(len(EAR_COPIES) * e, EAR))

  neck_pts, neck_tris, neck_part = _neck_template()
  base = v + h + len(EAR_COPIES) * e
  pts = np.concatenate([np.zeros((base, 3)), neck_pts])
  axis = np.stack([np.zeros(len(neck_tris)), neck_pts[neck_tris[:, 0], 1],
                   np.full(len(neck_tris), NECK_Z)], -1)
  neck_tris = _orient_outward(pts, neck_tris + base, axis)
  parts.append(neck_part)
  i32, f32 = (lambda a: jnp.asarray(a, jnp.int32)), (lambda a: jnp.asarray(a, jnp.float32))
  return Head(loop_L=i32(loop), ring_t_R=f32(ring_t), centre_3=f32(centre), axes_3=f32(axes),
              mean_radius=f32(mean_radius), ear_anchor_2=i32(anchor),
              ear_Ex3=f32(ear_pts), neck_Nx3=f32(neck_pts),
              triangles_Tx3=i32(np.concatenate([skull_tris, ear_tris_all, neck_tris])),
              part_H=i32(np.concatenate(parts)))


def model_head(model) -> Head:
  """`head_geometry` of a `MorphableModel`."""
  return head_geometry(np.asarray(model.mean_Vx3), np.asarray(model.triangles_Tx3),
                       np.asarray(model.landmarks_68))


def default_head_shape() -> HeadShape:
  one = jnp.float32(1.0)
  return HeadShape(jnp.ones(3, jnp.float32), one, one, one, one)


def random_head_shape(key) -> HeadShape:
  """Skull proportions +-6%, ears 0.85-1.15 in size and 0.5-1.3 in how far they stand out,
  neck 0.85-1.1, shoulders 0.85-1.2 (pure function of the key)."""
  k = jax.random.split(key, 5)
  u = lambda kk, lo, hi, shape=(): jax.random.uniform(kk, shape, minval=lo, maxval=hi)
  return HeadShape(1.0 + 0.06 * jnp.clip(jax.random.normal(k[0], (3,)), -2, 2),
                   u(k[1], 0.85, 1.15), u(k[2], 0.5, 1.3), u(k[3], 0.85, 1.1),
                   u(k[4], 0.85, 1.2))


def _smooth(x):
  x = jnp.clip(x, 0.0, 1.0)
  return x * x * (3.0 - 2.0 * x)


def head_vertices(head: Head, face_Vx3, shape_params: HeadShape) -> jnp.ndarray:
  """(H, 3) head vertices around one example's face vertices (canonical frame, before the pose).
  Pure jnp: jit- and vmap-able."""
  face = jnp.asarray(face_Vx3, jnp.float32)
  c = head.centre_3
  rel = face[head.loop_L] - c                                   # (L, 3)
  r0 = numerics.safe_norm(rel)
  d = rel / jnp.maximum(r0, numerics.EPS)[:, None]
  # The skull and neck grow with the face: scaled by the boundary's mean distance.
  grow = r0.mean() / head.mean_radius
  axes = head.axes_3 * shape_params.skull_3 * grow
  back = jnp.array([0.0, 0.0, -1.0], jnp.float32)
  # Slerp from each boundary direction to the back of the head. The cosine is kept off +-1: a
  # boundary vertex never points straight back or straight ahead, and the guard keeps sin > 0.
  cos_o = jnp.clip(d @ back, -1.0 + 1e-4, 1.0 - 1e-4)
  omega = jnp.arccos(cos_o)                                     # (L,)
  t = head.ring_t_R[:, None]                                    # (R, 1)
  wa = jnp.sin((1.0 - t) * omega) / jnp.sin(omega)
  wb = jnp.sin(t * omega) / jnp.sin(omega)
  dirs = wa[..., None] * d + wb[..., None] * back               # (R, L, 3)
  ellipse = 1.0 / numerics.safe_norm(dirs / axes)               # skull radius along each dir
  # The distance leaves the face's within the first third of the sweep (C1 at the boundary).
  radius = r0 + (ellipse - r0) * _smooth(t / 0.35)
  rings = (c + dirs * radius[..., None]).reshape(-1, 3)
  pole = c + back * axes[2]

  ears = []
  # Sized about the ear's root (its front edge); ear_out scales how far it stands out (x).
  centre = jnp.asarray(EAR_CENTRE + [0.0, 0.0, 0.08], jnp.float32)
  for sign, inner in EAR_COPIES:
    anchor = face[head.ear_anchor_2[0 if sign > 0 else 1]]
    # The root sits on the face's widest point at the ear's height, and every ear point lies
    # outside it: in a frontal view an ear then never covers a face pixel, as in a photo.
    band = jnp.abs(face[:, 1] - anchor[1] - centre[1]) < 0.2
    widest = jnp.max(jnp.where(band, -sign * face[:, 0], -jnp.inf))
    local = (head.ear_Ex3 - centre) * shape_params.ear
    local = local.at[:, 0].multiply(shape_params.ear_out) * jnp.array([sign, 1.0, 1.0])
    thick = jnp.array([sign * 0.004 * inner, 0.0, 0.0])
    root = jnp.stack([-sign * widest, anchor[1] + centre[1], anchor[2] + centre[2]])
    ears.append(root + local + thick)
  neck = head.neck_Nx3 * jnp.stack([shape_params.neck * grow, jnp.float32(1.0),
                                    shape_params.neck * grow])
  wide = jnp.where(head.neck_Nx3[:, 1] < -1.3, shape_params.shoulders / shape_params.neck, 1.0)
  neck = neck.at[:, 0].multiply(wide) + c
  return jnp.concatenate([rings, pole[None], *ears, neck])
