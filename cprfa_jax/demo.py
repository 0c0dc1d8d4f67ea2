"""Quickstart demo: render a morphable model at several poses, identities and expressions.

    python -m cprfa_jax.demo --out demo.png [--model model.npz] [--size 256]

Each cell is a flat-shaded rendering by the painter's algorithm (triangles filled far to near
with OpenCV; the z-buffer renderer is separate) with the 68 landmarks on top: green where the
vertex faces the camera, red where it faces away. Everything here runs on the host.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from cprfa_jax.geometry import projection
from cprfa_jax.mm import model as mm
from cprfa_jax.mm.synthetic import EXPRESSIONS, synthetic_model
from cprfa_jax.report import draw

_LIGHT_3 = np.array([-0.45, 0.55, 0.8]) / np.linalg.norm([-0.45, 0.55, 0.8])
_SKIN_BGR = np.array([150.0, 185.0, 230.0])
_BACK_BGR = np.array([70.0, 70.0, 90.0])  # the inside of the open mesh, seen past its border
_SUPERSAMPLE = 2  # draw at 2x and downsample: cheap antialiasing for the painter's algorithm


def fit_pose(model: mm.MorphableModel, pitch=0.0, yaw=0.0, roll=0.0, margin=0.92):
  """pose_6 that rotates the mean about its bounding-box centre and fits it in the image."""
  mean = np.asarray(model.mean_Vx3)
  centre = 0.5 * (mean.min(0) + mean.max(0))
  s = margin / np.linalg.norm(mean - centre, axis=1).max()
  pose = np.array(projection.pose_from_degrees(pitch, yaw, roll, s))
  shift = np.asarray(projection.camera_points(centre[None], pose))[0, :2]
  pose[4:6] = -shift
  return pose


def render_shaded(model: mm.MorphableModel, verts_Vx3, pose_6, size: int = 256) -> np.ndarray:
  """Lambertian rendering of verts (V, 3) at pose (6,) into a (size, size, 3) uint8 BGR image."""
  big = size * _SUPERSAMPLE
  tri = np.asarray(model.triangles_Tx3)
  cam = np.asarray(projection.camera_points(verts_Vx3, pose_6))
  pix = np.asarray(projection.to_pixels(cam[:, :2], (big, big)))
  r = np.asarray(projection.rotation_matrix(*np.asarray(pose_6)[:3]))
  normal = np.asarray(projection.vertex_normals(verts_Vx3, model.triangles_Tx3)) @ r.T
  shade = 0.2 + 0.8 * np.clip(normal @ _LIGHT_3, 0.0, 1.0)
  # Orientation of each projected triangle: y is flipped in pixels, so front faces are clockwise.
  p0, p1, p2 = (pix[tri[:, i]] for i in range(3))
  e1, e2 = p1 - p0, p2 - p0
  front = (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]) < 0
  colour = np.where(front[:, None], _SKIN_BGR * shade[tri].mean(1)[:, None], _BACK_BGR)
  img = np.full((big, big, 3), 255, np.uint8)
  order = np.argsort(cam[tri, 2].mean(1))  # far (small z) first
  pts = np.round(pix[tri] * 16).astype(np.int32)  # 4 fractional bits for cv2's shift=4
  for i in order:
    cv2.fillConvexPoly(img, pts[i], colour[i].tolist(), cv2.LINE_8, 4)
  return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def draw_landmarks(img, model: mm.MorphableModel, verts_Vx3, pose_6, label: str = ""):
  """Draws the 68 landmarks (green facing the camera, red facing away) and a label in place."""
  size = img.shape[0]
  lm = np.asarray(model.landmarks_68)
  pix = np.asarray(projection.to_pixels(projection.project(verts_Vx3, pose_6), (size, size)))[lm]
  visible = np.asarray(projection.front_facing(verts_Vx3, model.triangles_Tx3, pose_6))[lm]
  radius = max(1, size // 160)
  for i in np.argsort(visible, kind="stable"):  # visible last: at a profile they coincide
    (u, v), vis = pix[i], visible[i]
    cv2.circle(img, (int(round(u)), int(round(v))), radius, (0, 170, 0) if vis else (0, 0, 220),
               -1, cv2.LINE_AA)
  if label:
    cv2.putText(img, label, (4, size - 6), cv2.FONT_HERSHEY_SIMPLEX, size / 700, (40, 40, 40), 1,
                cv2.LINE_AA)
  return img


def demo_cells(model: mm.MorphableModel, seed: int = 0):
  """(label, alpha_id, alpha_exp, (pitch, yaw, roll) degrees) for the demo grid, row by row:
  a yaw sweep; pitch / roll; random identities; single expressions at +3 and a random mix."""
  rng = np.random.default_rng(seed)
  zid, zexp = np.zeros(model.num_id), np.zeros(model.num_exp)
  cells = [(f"yaw {y:+d}", zid, zexp, (0, y, 0)) for y in (-90, -60, -30, 0, 30, 60, 90)]
  for p, y, r in ((25, 0, 0), (-25, 0, 0), (0, 0, 30), (10, 45, -10), (-15, -45, 15)):
    cells.append((f"p{p:+d} y{y:+d} r{r:+d}", zid, zexp, (p, y, r)))
  for i, yaw in enumerate((20, 20, -30, -30, -30)):
    alpha = rng.standard_normal(model.num_id)
    cells.append((f"identity {i} yaw {yaw:+d}", alpha, zexp, (0, yaw, 0)))
  names = EXPRESSIONS if model.name == "synthetic" else range(model.num_exp)
  for e, name in list(enumerate(names))[:min(model.num_exp, 3)]:
    alpha = np.zeros(model.num_exp)
    alpha[e] = 3.0
    cells.append((f"{name} x3", zid, alpha, (0, 15, 0)))
  if model.num_exp:
    cells.append(("random id + exp", rng.standard_normal(model.num_id),
                  np.clip(rng.standard_normal(model.num_exp), -2, 2), (10, -20, 0)))
  return cells


def render_grid(model: mm.MorphableModel, size: int = 256, cols: int = 7, seed: int = 0):
  """The demo image: one cell per `demo_cells` entry, `cols` per row, uint8 BGR."""
  tiles = []
  for label, a_id, a_exp, (p, y, r) in demo_cells(model, seed):
    verts = np.asarray(mm.shape(model, a_id, a_exp))
    pose = fit_pose(model, p, y, r)
    tile = render_shaded(model, verts, pose, size)
    tiles.append(draw_landmarks(tile, model, verts, pose, label))
  while len(tiles) % cols:
    tiles.append(np.full_like(tiles[0], 255))
  rows = [np.concatenate(tiles[i:i + cols], 1) for i in range(0, len(tiles), cols)]
  return np.concatenate(rows, 0)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="demo.png", help="PNG file to write")
  parser.add_argument("--model", default=None, help="a model .npz (save_npz); default synthetic")
  parser.add_argument("--size", type=int, default=256, help="cell size in pixels")
  parser.add_argument("--seed", type=int, default=0, help="seed of the random samples")
  args = parser.parse_args(argv)
  if args.size < 32:
    parser.error(f"--size {args.size}: cells need at least 32 pixels")
  if args.model:
    model = mm.load_npz(args.model)
  else:
    model = synthetic_model()
  img = render_grid(model, args.size, seed=args.seed)
  try:
    draw.save_png(args.out, img[..., ::-1])      # the grid is drawn in OpenCV's BGR
  except OSError as e:
    raise SystemExit(str(e)) from None
  print(args.out)


if __name__ == "__main__":
  main()
