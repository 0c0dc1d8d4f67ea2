"""Format-exact fixtures of the real data sets, built by the tests (never real data).

* `make_bfm(path)`: a 300-vertex cap in the 3DDFA BFM layout (199 identity, 29 expression bases,
  BFM-like raw units, 68 keypoints), written as .mat (data-formats §2);
* `write_example(stem, raw, rng)`: one 450x450 jpg + .mat pair with the keys, shapes and dtypes
  of data-formats §1, its `pt3d_68` computed with the files' own projection convention, written
  out here independently of `geometry.projection`;
* `write_aflw2000(root, raw, n)` / `write_300wlp(root, raw, stems)`: the archives' layouts;
* `splat_render`: a stand-in for the renderer (each vertex's PNCC code at its rounded pixel).
"""

from __future__ import annotations

import cv2
import numpy as np
import scipy.io

from cprfa_jax.geometry.projection import project, to_pixels

NX, NY = 15, 20
STEMS_300WLP = ("AFW/AFW_134212_1_0", "AFW/AFW_134212_1_3", "AFW_Flip/AFW_134212_1_0",
                "IBUG/IBUG_image_003_1_0")


def make_bfm(path, seed: int = 0) -> dict:
  """Writes the fixture BFM to `path` (.mat); returns its raw arrays."""
  rng = np.random.default_rng(seed)
  gx, gy = np.meshgrid(np.linspace(-1, 1, NX), np.linspace(-1, 1, NY))
  mean = np.stack([7e4 * gx, 9e4 * gy, 5e4 * (1 - 0.5 * (gx**2 + gy**2))], -1).reshape(-1, 3)
  mean += [1.2e3, 8e3, -3e4]
  idx = np.arange(NX * NY).reshape(NY, NX)
  a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
  tri = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3),
                        np.stack([a, d, c], -1).reshape(-1, 3)])
  lm = rng.permutation(NX * NY)[:68]
  raw = {"u": mean.reshape(-1, 1).astype(np.float32),
         "w_shp": (np.linalg.qr(rng.normal(size=(3 * NX * NY, 199)))[0] * 2e4).astype(np.float32),
         "w_exp": (rng.normal(size=(3 * NX * NY, 29)) * 3e2).astype(np.float32),
         "tri": (tri + 1).T.astype(np.float64),
         "keypoints": (3 * lm[:, None] + np.arange(3)).reshape(1, -1).astype(np.float64),
         "sigma": rng.uniform(0.5, 3.0, (199, 1)), "sigma_exp": rng.uniform(0.5, 3.0, (29, 1))}
  scipy.io.savemat(path, raw)
  return raw


def rot(pitch, yaw, roll):
  """data-formats §1: R = Rx(pitch) Ry(yaw) Rz(roll), with its (transposed) matrices."""
  c, s = np.cos, np.sin
  rx = np.array([[1, 0, 0], [0, c(pitch), s(pitch)], [0, -s(pitch), c(pitch)]])
  ry = np.array([[c(yaw), 0, -s(yaw)], [0, 1, 0], [s(yaw), 0, c(yaw)]])
  rz = np.array([[c(roll), s(roll), 0], [-s(roll), c(roll), 0], [0, 0, 1]])
  return rx @ ry @ rz


def write_example(stem, raw, rng, pts2d=21, h=450):
  """One format-exact jpg + .mat pair at `stem` (a path without suffix)."""
  n = raw["u"].size // 3
  shp = rng.normal(size=199) * raw["sigma"][:, 0]
  exp = rng.normal(size=29) * raw["sigma_exp"][:, 0]
  pp = np.array([[rng.uniform(-0.4, 0.4), rng.uniform(-1.2, 1.2), rng.uniform(-0.3, 0.3),
                  rng.uniform(200, 250), rng.uniform(200, 250), rng.uniform(-50, 50),
                  rng.uniform(1.1e-3, 1.5e-3)]], np.float32)
  p = pp[0].astype(np.float64)
  x_3xn = (raw["u"][:, 0] + raw["w_shp"] @ shp + raw["w_exp"] @ exp).reshape(n, 3).T
  v = p[6] * rot(*p[:3]) @ x_3xn + p[3:6, None]
  lm = raw["keypoints"][0, 0::3].astype(int) // 3
  pt3d = np.stack([v[0, lm], h + 1 - v[1, lm], v[2, lm]]).astype(np.float32)
  image = cv2.GaussianBlur(rng.integers(0, 256, (h, h, 3)).astype(np.uint8), (0, 0), 3)
  stem.parent.mkdir(parents=True, exist_ok=True)
  cv2.imwrite(str(stem.with_suffix(".jpg")), image)
  scipy.io.savemat(stem.with_suffix(".mat"), {
      "pt3d_68": pt3d, "pt2d": np.where(rng.random((2, pts2d)) < 0.1, -1.0,
                                        rng.uniform(0, h, (2, pts2d))),
      "Pose_Para": pp, "Shape_Para": shp[:, None], "Exp_Para": exp[:, None],
      "Tex_Para": rng.normal(size=(199, 1)), "Color_Para": np.ones((1, 7), np.float32),
      "Illum_Para": rng.normal(size=(1, 10)), "roi": np.array([[100, 90, 360, 380]], np.int16)})


def write_aflw2000(root, raw, n=4, seed=1):
  """AFLW2000-3D's flat folder of image0000k.jpg + .mat."""
  rng = np.random.default_rng(seed)
  for i in range(n):
    write_example(root / f"image{i + 2:05d}", raw, rng)
  return root


def write_300wlp(root, raw, stems=STEMS_300WLP, seed=2):
  """300W-LP's subject folders (and its `landmarks/` folder of other annotations)."""
  rng = np.random.default_rng(seed)
  for stem in stems:
    write_example(root / stem, raw, rng, pts2d=68)
  (root / "landmarks" / "AFW").mkdir(parents=True, exist_ok=True)
  scipy.io.savemat(root / "landmarks/AFW/AFW_134212_1_0_pts.mat", {"pts_2d": np.zeros((68, 2))})
  return root


def splat_render(model, verts_Vx3, pose_6, hw):
  """Test stand-in for the renderer: each vertex's PNCC code at its rounded pixel."""
  pix = np.round(np.asarray(to_pixels(project(verts_Vx3, pose_6), hw))).astype(int)
  ok = (pix >= 0).all(1) & (pix[:, 0] < hw[1]) & (pix[:, 1] < hw[0])
  dafi, mask = np.zeros((*hw, 3), np.float32), np.zeros(hw, bool)
  dafi[pix[ok, 1], pix[ok, 0]] = np.asarray(model.pncc_Vx3)[ok]
  mask[pix[ok, 1], pix[ok, 0]] = True
  return dafi, mask
