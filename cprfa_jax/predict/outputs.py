"""What the predictor writes for a photo: JSON, a coloured Wavefront OBJ, an overlay picture and
a DAFI picture. Host-side NumPy / OpenCV on the face dicts of `predictor.Predictor.face`.

Conventions: photo pixels are 0-based, x right, y down, pixel centres on integers
(`geometry.projection.to_pixels`); a face's `vertices_px` (V, 3) is x, y in photo pixels and z
the depth toward the camera in pixels. The OBJ flips y to point up (y' = H - 1 - y) so mesh
viewers show the face upright, with z toward the viewer.
"""

from __future__ import annotations

import json
import math

import cv2
import numpy as np

from cprfa_jax.geometry.projection import rotation_matrix
from cprfa_jax.report import draw

JSON_KEYS = ("box", "landmarks_68", "pitch_yaw_roll_deg", "pose", "pose_para", "alpha",
             "confidence", "failure")
AXIS_COLOURS = ((230, 40, 40), (40, 200, 40), (50, 90, 255))   # x red, y green, z blue (RGB)
BOX_COLOUR, FAIL_COLOUR, LANDMARK_COLOUR = (255, 210, 0), (255, 30, 30), (0, 255, 120)
MESH_COLOUR, MESH_ALPHA = (255, 255, 255), 0.45


# ----------------------------------------------------------------------------------------------
# JSON

def _sig(x, digits: int):
  """A float rounded to `digits` significant digits, None for NaN / inf (JSON has neither)."""
  x = float(x)
  return float(f"{x:.{digits}g}") if math.isfinite(x) else None


def _list(a, digits: int):
  return [_list(v, digits) for v in a] if np.ndim(a) else _sig(a, digits)


def face_json(face: dict) -> dict:
  """The JSON-ready dict of one face: exactly `JSON_KEYS`, plain floats / bools / lists.
  Pixels to 0.01 px, angles to 0.01 degree, other values to 6 significant digits (alpha 4);
  a NaN confidence (nothing detected) is null."""
  def px(a):
    return [_px(v) for v in a] if np.ndim(a) else _px(a)

  def _px(v):
    return px(v) if np.ndim(v) else (round(float(v), 2) if math.isfinite(float(v)) else None)

  return {"box": px(np.asarray(face["box"], np.float64).reshape(4)),
          "landmarks_68": px(np.asarray(face["landmarks_68"], np.float64).reshape(68, 2)),
          "pitch_yaw_roll_deg": px(np.asarray(face["pitch_yaw_roll_deg"], np.float64)),
          "pose": _list(np.asarray(face["pose"], np.float64).reshape(6), 6),
          "pose_para": _list(np.asarray(face["pose_para"], np.float64).reshape(7), 6),
          "alpha": _list(np.asarray(face["alpha"], np.float64).reshape(-1), 4),
          "confidence": _sig(face["confidence"], 5),
          "failure": bool(face["failure"])}


def write_json(path, image_name: str, faces) -> None:
  """Writes {"image": image_name, "faces": [face_json(f), ...]} (faces in the order given:
  box order)."""
  doc = {"image": str(image_name), "faces": [face_json(f) for f in faces]}
  with open(path, "w", encoding="utf-8") as f:
    json.dump(doc, f, allow_nan=False)
    f.write("\n")


# ----------------------------------------------------------------------------------------------
# OBJ

def vertex_colours(rgb_HxWx3, points_Vx2) -> np.ndarray:
  """Bilinear samples of the photo at pixel positions (x, y), clipped to the image: (V, 3) in
  [0, 1]. Non-finite points get grey."""
  img = np.asarray(rgb_HxWx3, np.float32) / 255.0
  h, w = img.shape[:2]
  p = np.asarray(points_Vx2, np.float64)[:, :2]
  ok = np.all(np.isfinite(p), -1)
  x = np.clip(np.where(ok, p[:, 0], 0), 0, w - 1)
  y = np.clip(np.where(ok, p[:, 1], 0), 0, h - 1)
  x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
  x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
  fx, fy = (x - x0)[:, None], (y - y0)[:, None]
  c = ((1 - fy) * ((1 - fx) * img[y0, x0] + fx * img[y0, x1])
       + fy * ((1 - fx) * img[y1, x0] + fx * img[y1, x1]))
  return np.where(ok[:, None], np.clip(c, 0, 1), 0.5)


def write_obj(path, faces_vertices, triangles_Tx3, colours, height: int) -> None:
  """A Wavefront OBJ of every face's mesh: one `o face_K` per face, `v x y z r g b` with
  x, y' = height - 1 - y, z from `vertices_px` (V, 3) and colours (V, 3) in [0, 1], then
  `f i j k` (1-based, offset by the vertices written before).

  Winding: the model's triangles are wound so that normals point out of the face in its frame
  (x right, y up, z toward the camera; `mm.model.orient_triangles`). Photo pixels flip y (one
  reflection), so in `vertices_px` the same winding gives inward normals; flipping y back for
  the OBJ is a second reflection, and two reflections preserve orientation: the written normals
  point out of the face again (toward the viewer, +z, for a frontal face)."""
  tri = np.asarray(triangles_Tx3, np.int64)
  lines, offset = [], 0
  for k, (verts, col) in enumerate(zip(faces_vertices, colours)):
    v = np.asarray(verts, np.float64).reshape(-1, 3)
    c = np.clip(np.asarray(col, np.float64).reshape(-1, 3), 0, 1)
    if len(c) != len(v):
      raise ValueError(f"face {k}: {len(v)} vertices but {len(c)} colours")
    lines.append(f"o face_{k}")
    lines.extend(f"v {x:.3f} {height - 1 - y:.3f} {z:.3f} {r:.4f} {g:.4f} {b:.4f}"
                 for (x, y, z), (r, g, b) in zip(v, c))
    lines.extend(f"f {i} {j} {l}" for i, j, l in tri + 1 + offset)
    offset += len(v)
  with open(path, "w", encoding="ascii") as f:
    f.write("# cprfa_jax.predict: x right, y up (flipped photo rows), z toward the viewer, px\n")
    f.write("\n".join(lines) + "\n")


def write_faces_obj(path, rgb_HxWx3, faces, triangles_Tx3) -> None:
  """`write_obj` for predictor faces: their `vertices_px`, coloured from the photo."""
  verts = [np.asarray(f["vertices_px"], np.float64) for f in faces]
  write_obj(path, verts, triangles_Tx3, [vertex_colours(rgb_HxWx3, v) for v in verts],
            rgb_HxWx3.shape[0])


def read_obj(path):
  """(vertices (N, 3), colours (N, 3), triangles (M, 3) 0-based) of an OBJ `write_obj` wrote
  (colours are 0.5 grey for `v x y z` lines without them; f entries may be i/t/n)."""
  verts, cols, tris = [], [], []
  with open(path, encoding="ascii") as f:
    for line in f:
      parts = line.split()
      if not parts:
        continue
      if parts[0] == "v":
        vals = [float(x) for x in parts[1:]]
        verts.append(vals[:3])
        cols.append(vals[3:6] if len(vals) >= 6 else [0.5, 0.5, 0.5])
      elif parts[0] == "f":
        tris.append([int(p.split("/")[0]) - 1 for p in parts[1:4]])
  return (np.asarray(verts, np.float64).reshape(-1, 3), np.asarray(cols, np.float64).reshape(-1, 3),
          np.asarray(tris, np.int64).reshape(-1, 3))


# ----------------------------------------------------------------------------------------------
# Pictures

def _visible_triangles(verts_Vx3, tri_Tx3, max_triangles: int) -> np.ndarray:
  """Front-facing triangles (normal toward the camera, computed with y flipped back up), every
  k-th one so that at most about `max_triangles` are drawn."""
  v = np.asarray(verts_Vx3, np.float64) * [1.0, -1.0, 1.0]
  a, b, c = (v[tri_Tx3[:, i]] for i in range(3))
  front = tri_Tx3[np.cross(b - a, c - a)[:, 2] > 0]
  step = max(1, math.ceil(len(front) / max(max_triangles, 1)))
  return front[::step]


def _pose_axes(img, face, centre_2, length: float, thickness: int) -> None:
  """The model's x, y, z axes (columns of R, Eq. 2's rotation) drawn from centre_2, image y
  flipped; farthest axis first so the nearer ones stay on top."""
  r = np.asarray(rotation_matrix(*np.asarray(face["pose"], np.float32)[:3]), np.float64)
  for j in np.argsort(r[2]):
    tip = centre_2 + length * np.array([r[0, j], -r[1, j]])
    cv2.arrowedLine(img, tuple(draw.fixed_point(centre_2)), tuple(draw.fixed_point(tip)),
                    AXIS_COLOURS[j], thickness, cv2.LINE_AA, draw.SHIFT, 0.15)


def _label(img, face, box, scale: float, thickness: int) -> None:
  p, y, r = np.asarray(face["pitch_yaw_roll_deg"], np.float64).reshape(3)
  text = f"P {p:+.0f} Y {y:+.0f} R {r:+.0f}" + ("  FAILED?" if face.get("failure") else "")
  w, h, base = draw.text_size(text, scale, thickness)
  x0 = int(np.clip(box[0], 0, max(img.shape[1] - w - 4, 0)))
  y_base = int(box[1] - base - 4) if box[1] - h - base - 6 >= 0 else int(box[3] + h + 4)
  y_base = int(np.clip(y_base, h + 2, img.shape[0] - base - 2))
  colour = FAIL_COLOUR if face.get("failure") else BOX_COLOUR
  cv2.rectangle(img, (x0, y_base - h - 3), (x0 + w + 4, y_base + base + 1), (0, 0, 0), -1)
  draw.put_text(img, text, (x0 + 2, y_base), scale, colour, thickness)


def overlay(rgb_HxWx3, faces, triangles_Tx3) -> np.ndarray:
  """The photo with, per face: its mesh wireframe (front-facing triangles, thinned for dense
  meshes, semi-transparent), its 68 landmarks, its box, pose axes from the landmarks' centre
  (x red, y green, z blue; half the box long) and a pitch/yaw/roll label ("FAILED?" and a red
  box when `failure`). Sizes follow the photo's size. Returns uint8 RGB (H, W, 3)."""
  img = draw.to_uint8_rgb(rgb_HxWx3).copy()
  h, w = img.shape[:2]
  unit = min(h, w) / 500.0
  thick = max(1, int(round(2 * unit)))
  tri = np.asarray(triangles_Tx3, np.int64)
  mesh = img.copy()
  for face in faces:
    box = np.asarray(face["box"], np.float64).reshape(4)
    side = max(box[2] - box[0], box[3] - box[1], 1.0)
    verts = np.asarray(face["vertices_px"], np.float64)
    # About one triangle edge per 6 px of face: a readable mesh, whatever the model's density.
    shown = _visible_triangles(verts, tri, int((side / 6.0) ** 2))
    polys = draw.fixed_point(verts[shown][..., :2])
    cv2.polylines(mesh, list(polys), True, MESH_COLOUR, 1, cv2.LINE_AA, draw.SHIFT)
  img = draw.blend(img, mesh, MESH_ALPHA)
  for face in faces:
    box = np.asarray(face["box"], np.float64).reshape(4)
    side = max(box[2] - box[0], box[3] - box[1], 1.0)
    colour = FAIL_COLOUR if face.get("failure") else BOX_COLOUR
    lw = thick * (2 if face.get("failure") else 1)
    cv2.rectangle(img, tuple(draw.fixed_point(box[:2])), tuple(draw.fixed_point(box[2:])),
                  colour, lw, cv2.LINE_AA, draw.SHIFT)
    lm = np.asarray(face["landmarks_68"], np.float64).reshape(68, 2)
    radius = max(1.2, side / 120.0)
    draw.draw_dots(img, lm, radius + max(1.0, radius / 3), (0, 0, 0))
    draw.draw_dots(img, lm, radius, LANDMARK_COLOUR)
    centre = np.nanmean(lm, 0) if np.isfinite(lm).any() else (box[:2] + box[2:]) / 2
    _pose_axes(img, face, centre, side / 2, max(thick, int(round(side / 100))))
    _label(img, face, box, max(0.4, 0.6 * unit), max(1, thick // 2 + (thick > 2)))
  return img


def dafi_picture(faces, min_side: int = 128) -> np.ndarray:
  """Per face, its network crop and its DAFI (dafi * mask on black) side by side; faces
  stacked top to bottom. Crops smaller than `min_side` are upscaled by an integer factor
  (nearest, which keeps DAFI codes honest). uint8 RGB."""
  if not faces:
    strip = np.full((40, 240, 3), 255, np.uint8)
    draw.put_text(strip, "no faces", (8, 26), 0.6)
    return strip
  rows = []
  for face in faces:
    crop = draw.to_uint8_rgb(face["crop"])
    mask = np.asarray(face["mask"], bool)
    dafi = np.where(mask[..., None], np.clip(np.asarray(face["dafi"], np.float32), 0, 1), 0)
    scale = max(1, min_side // crop.shape[0])
    rows.append(draw.tile_columns([draw.upscale(crop, scale), draw.upscale(dafi, scale)]))
  return draw.tile_rows(rows, align="centre")
