"""A procedurally generated face 3DMM: the project's embedded default (`synthetic_model`).

Real models (SFM, BFM) are licensed files the project cannot ship; this one is made in code so
that tests, the demo and the quickstart config run anywhere. Raw units are millimetres in a
head-sized frame (x = subject's left, y up, z toward the camera, eye line at y = 0).

The surface is a grid over (theta, v): theta in +-105 degrees around the head (so a 90 degree
yaw shows a real profile silhouette) and v from the jaw line to the top of the forehead. A base
ellipse-like head, its width and depth varying with height, is displaced along its normal by
smooth features (brows, eye sockets and lids, nose, alae, cheeks, lips, chin). The grid is
mirror-symmetric in theta, so the symmetry map is exact.

Identity bases are a PCA of designed deformation fields (proportions, feature sizes and
positions) plus random low-frequency fields, a few of them asymmetric; expression bases are
localised blendshapes (`EXPRESSIONS`). The mean does not depend on the seed; the bases do.
"""

from __future__ import annotations

import numpy as np
from numpy.polynomial import legendre
from scipy.interpolate import PchipInterpolator

from cprfa_jax.mm.model import MorphableModel, build_model

THETA_MAX = np.radians(105.0)
EYE_X, EYE_Y, EYE_HALF = 31.0, 1.0, 14.0   # eye centre |x|, height, half-width (mm)
MOUTH_HALF, MOUTH_Y = 25.0, -67.0          # mouth corner |x| and height of the lip line
Y_CHIN, Y_TOP = -122.0, 95.0               # lowest and highest rows on the midline (mm)
EXPRESSIONS = ("jaw_open", "smile", "pucker", "mouth_corner_down", "lip_press", "jaw_sideways",
               "blink", "squint", "brow_raise", "frown", "cheek_puff", "wink_left",
               "smile_left", "mouth_left")


def _curve(knots):
  """A smooth monotone-preserving profile through (y, value) knots, constant outside them."""
  k = np.asarray(sorted(knots), np.float64)
  f = PchipInterpolator(k[:, 0], k[:, 1])
  return lambda y: f(np.clip(y, k[0, 0], k[-1, 0]))


# Head half-width and half-depth by height, the midline's recession (forehead, under the chin),
# and the nose's protrusion and cross-section sigma along its length. Anthropometric ballpark.
_WIDTH = _curve([(-125, 42), (-95, 53), (-70, 62), (-45, 69), (-20, 73), (0, 72), (30, 70),
                 (60, 65), (95, 54)])
_DEPTH = _curve([(-125, 80), (-60, 95), (0, 95), (95, 85)])
_MID_Z = _curve([(-125, -20), (-112, -8), (-85, -1), (-40, 0), (18, 0), (40, -4), (65, -15),
                 (95, -42)])
_NOSE_H = _curve([(10, 0), (4, 1.0), (-5, 5), (-20, 13), (-32, 20.5), (-37, 22.5), (-41, 20.5),
                  (-45, 13), (-49, 4), (-53, 0)])
_NOSE_W = _curve([(10, 5), (-10, 5.5), (-25, 7), (-35, 8.5), (-45, 10)])


def _y_bottom(theta):  # the jaw line: chin at -122 mm rising to the jaw angle and the ear
  return Y_CHIN + 52.0 * (np.abs(theta) / THETA_MAX) ** 2.2


def _y_top(theta):
  return Y_TOP - 30.0 * (np.abs(theta) / THETA_MAX) ** 2


def _gauss(dx, dy, sx, sy):
  return np.exp(-0.5 * ((dx / sx) ** 2 + (dy / sy) ** 2))


def _sigmoid(t):
  return 0.5 * (1.0 + np.tanh(0.5 * t))


def _grid(num_vertices):
  """(theta, y) of an n_v x n_t grid, odd n_t, denser on the face than at the sides."""
  n_v = max(int(round(np.sqrt(num_vertices / 0.95))), 8)
  n_t = max(int(round(num_vertices / n_v)) // 2 * 2 + 1, 9)
  u = np.linspace(-1.0, 1.0, n_t)
  u = 0.5 * (u - u[::-1])  # exactly antisymmetric, so mirrored columns mirror exactly
  theta = THETA_MAX * (0.45 * u + 0.55 * u ** 3)
  # Rows follow a density peaked between the brows and the chin; the same fraction of each
  # column's height keeps rows continuous around the head.
  ys = np.linspace(Y_CHIN, Y_TOP, 512)
  density = 1.0 + 2.5 * np.exp(-0.5 * ((ys + 32.0) / 42.0) ** 2)
  cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(ys))])
  frac = (np.interp(np.linspace(0, cdf[-1], n_v), cdf, ys) - ys[0]) / (ys[-1] - ys[0])
  t_grid = np.broadcast_to(theta, (n_v, n_t))
  lo, hi = _y_bottom(t_grid), _y_top(t_grid)
  return t_grid, lo + (hi - lo) * frac[:, None]


def _base_surface(theta, y):
  x = _WIDTH(y) * np.sin(theta)
  z = _MID_Z(y) + _DEPTH(y) * (np.cos(theta) - 1.0)
  return np.stack([x, y, z], -1)


def _grid_normals(p_RxCx3):
  n = np.cross(np.gradient(p_RxCx3, axis=1), np.gradient(p_RxCx3, axis=0))
  return n / np.linalg.norm(n, axis=-1, keepdims=True)


def _lids(ax):
  """Upper and lower lid margins (y) of the eye at |x| = ax, and the inside-the-eye weight."""
  r2 = np.clip(1.0 - ((ax - EYE_X) / EYE_HALF) ** 2, 0.0, 1.0)
  tilt = 0.06 * (ax - EYE_X)  # outer corners sit a little higher than inner ones
  return EYE_Y + tilt + 5.0 * np.sqrt(r2), EYE_Y + tilt - 4.0 * np.sqrt(r2), r2


def _lip_lines(x):
  """Lip line and the upper / lower vermilion borders (y) at x, and the mouth's width weight."""
  r2 = np.clip(1.0 - (x / MOUTH_HALF) ** 2, 0.0, 1.0)
  line = MOUTH_Y + 1.0 * r2
  bow = 1.2 * np.exp(-0.5 * (x / 2.5) ** 2)  # the dip of Cupid's bow
  return line, line + 7.5 * r2 ** 0.6 - bow, line - 9.0 * r2 ** 0.6, r2


def _features(x, y):
  """Named displacements (mm, along the base normal) of the face's features at base (x, y)."""
  ax = np.abs(x)
  upper, lower, eye_r2 = _lids(ax)
  line, lip_u, lip_l, mouth_r2 = _lip_lines(x)
  aperture = _sigmoid((upper - y) / 0.5) * _sigmoid((y - lower) / 0.5) * (eye_r2 > 0)
  brow_y = 15.0 + 5.0 * np.exp(-0.5 * ((ax - 34.0) / 12.0) ** 2)
  h_up, h_lo = np.maximum(lip_u - line, 2.0), np.maximum(line - lip_l, 2.0)
  mouth_w = np.sqrt(mouth_r2)
  # Nasolabial fold: distance to the segment from the ala to beside the mouth corner.
  a, b = np.array([19.0, -44.0]), np.array([29.0, -72.0])
  q = np.stack([ax, y], -1) - a
  t = np.clip(q @ (b - a) / np.dot(b - a, b - a), 0, 1)
  fold_d = np.linalg.norm(q - t[..., None] * (b - a), axis=-1)
  return {
      "brow": 3.5 * np.exp(-0.5 * ((y - brow_y) / 5.0) ** 2) * _sigmoid((56.0 - ax) / 4.0)
              + 2.0 * _gauss(x, y - 12.0, 10.0, 7.0),
      "socket": -11.0 * _gauss(ax - EYE_X, y - 2.0, 15.0, 10.0)
                - 3.0 * _gauss(ax - 20.0, y - 6.0, 6.0, 6.0)  # deepest by the nose bridge
                - 1.5 * np.exp(-0.5 * ((y - upper - 3.0) / 1.5) ** 2) * eye_r2  # lid crease
                - 3.0 * _gauss(ax - 62.0, y - 25.0, 10.0, 14.0),  # temples
      "eyeball": 9.0 * _gauss(ax - EYE_X, y - EYE_Y, 10.5, 6.5) - 3.0 * aperture
                 + 1.0 * _gauss(ax - EYE_X, y - EYE_Y, 3.0, 3.0),  # cornea
      "nose": _NOSE_H(y) * np.exp(-0.5 * (x / _NOSE_W(y)) ** 2)
              + 2.0 * _gauss(x, y + 37.0, 5.0, 4.0) - 3.0 * _gauss(x, y - 5.0, 8.0, 5.0)
              + 5.0 * _gauss(ax - 13.5, y + 44.0, 5.5, 4.5)         # alae
              - 1.2 * np.exp(-0.5 * (np.hypot(ax - 13.5, y + 44.0) - 7.0) ** 2)  # alar groove
              - 3.5 * _gauss(ax - 6.0, y + 47.5, 2.5, 1.8),          # nostrils
      "cheek": 4.0 * _gauss(ax - 52.0, y + 10.0, 15.0, 10.0)
               + 4.0 * _gauss(ax - 42.0, y + 45.0, 16.0, 16.0)
               - 1.5 * np.exp(-0.5 * (fold_d / 2.5) ** 2),
      "muzzle": 8.0 * _gauss(x, y + 62.0, 32.0, 22.0) - 1.2 * _gauss(x, y + 54.0, 2.5, 4.0),
      "upper_lip": 3.5 * np.exp(-0.5 * ((y - line - 0.5 * h_up) / (0.38 * h_up)) ** 2) * mouth_w,
      "lower_lip": 4.5 * np.exp(-0.5 * ((line - y - 0.5 * h_lo) / (0.38 * h_lo)) ** 2) * mouth_w,
      "lip_line": -2.0 * np.exp(-0.5 * ((y - line) / 1.4) ** 2) * mouth_w ** 0.5,
      "chin": 6.0 * _gauss(x, y + 104.0, 15.0, 10.0) - 3.0 * _gauss(x, y + 86.0, 16.0, 3.5),
  }


def _front_mask(theta):  # features live on the face, not behind the ears
  return _sigmoid((np.radians(85.0) - np.abs(theta)) / np.radians(4.0))


def _triangles(n_v, n_t):
  """Two triangles per grid quad; the diagonal is mirrored about the midline column so the
  triangulation, and hence the normals, are exactly symmetric."""
  idx = np.arange(n_v * n_t).reshape(n_v, n_t)
  a, b = idx[:-1, :-1], idx[:-1, 1:]
  c, d = idx[1:, :-1], idx[1:, 1:]
  left = (np.arange(n_t - 1) < (n_t - 1) // 2)[None, :]
  t1 = np.where(left[..., None], np.stack([a, b, d], -1), np.stack([a, b, c], -1))
  t2 = np.where(left[..., None], np.stack([a, d, c], -1), np.stack([b, d, c], -1))
  return np.concatenate([t1.reshape(-1, 3), t2.reshape(-1, 3)])


def _landmarks(theta, base, sym, mid_col):
  """iBUG-68 vertex indices: image-left points by nearest base (x, y), the rest by mirroring."""
  n_t = theta.shape[1]
  th, p = theta.reshape(-1), base.reshape(-1, 3)
  left = np.flatnonzero((th < -1e-9) & (np.abs(th) < np.radians(80)))
  mid = np.arange(p.shape[0]).reshape(-1, n_t)[:, mid_col]

  def near(x, y, pool=left, y_side=None):
    cand = pool if y_side is None else pool[(p[pool, 1] - MOUTH_Y) * y_side > 0]
    return cand[np.argmin((p[cand, 0] - x) ** 2 + (p[cand, 1] - y) ** 2)]

  lm = np.full(68, -1)
  # Jaw contour 0-8 by (theta, height above the jaw line): on the frontal silhouette.
  for i, (deg, up) in enumerate([(84, 84), (83, 66), (81, 48), (78, 31), (72, 17), (62, 9),
                                 (48, 6), (26, 4)]):
    t = -np.radians(deg)
    cand = left[np.abs(th[left] - t) <= np.abs(th[left] - t).min() + 1e-9]
    lm[i] = cand[np.argmin(np.abs(p[cand, 1] - (_y_bottom(t) + up)))]
  lm[8] = mid[np.argmin(np.abs(p[mid, 1] - (_y_bottom(0.0) + 3.0)))]
  brow = [(-52, 14.5), (-44, 19.5), (-35, 21), (-26, 20), (-18, 18)]
  upper, lower, _ = _lids(np.array([EYE_X - 6.0, EYE_X + 6.0]))
  eye = [(-(EYE_X + EYE_HALF - 1), EYE_Y + 0.84), (-(EYE_X + 6), upper[1]),
         (-(EYE_X - 6), upper[0]), (-(EYE_X - EYE_HALF + 1), EYE_Y - 0.84),
         (-(EYE_X - 6), lower[0]), (-(EYE_X + 6), lower[1])]
  for i, (x, y) in zip(range(17, 22), brow):
    lm[i] = near(x, y)
  for i, (x, y) in zip(range(36, 42), eye):
    lm[i] = near(x, y)
  for i, y in zip(range(27, 31), (3.0, -10.0, -23.0, -36.0)):
    lm[i] = mid[np.argmin(np.abs(p[mid, 1] - y))]
  lm[31], lm[32] = near(-11.0, -46.0), near(-6.0, -48.0)
  lm[33] = mid[np.argmin(np.abs(p[mid, 1] + 49.0))]
  line, lip_u, lip_l, _ = _lip_lines(np.array([0.0, 9.0, 18.0]))
  lm[48], lm[60] = near(-MOUTH_HALF, MOUTH_Y), near(-(MOUTH_HALF - 3), MOUTH_Y)
  lm[49], lm[50] = near(-17.0, lip_u[2]), near(-8.0, lip_u[1])
  lm[51] = mid[np.argmin(np.abs(p[mid, 1] - lip_u[0]))]
  lm[58], lm[59] = near(-8.0, lip_l[1]), near(-17.0, lip_l[2])
  lm[57] = mid[np.argmin(np.abs(p[mid, 1] - lip_l[0]))]
  lm[61] = near(-9.0, line[1] + 0.5, y_side=1)
  lm[67] = near(-9.0, line[1] - 0.5, y_side=-1)
  lm[62] = near(0.0, line[0] + 0.5, pool=mid, y_side=1)
  lm[66] = near(0.0, line[0] - 0.5, pool=mid, y_side=-1)
  # Mirror pairs of the iBUG scheme; the image-right member is the mirror of the image-left one.
  pairs = [(i, 16 - i) for i in range(8)] + [(17 + i, 26 - i) for i in range(5)] + [
      (31, 35), (32, 34), (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),
      (48, 54), (49, 53), (50, 52), (59, 55), (58, 56), (60, 64), (61, 63), (67, 65)]
  for i, j in pairs:
    lm[j] = sym[lm[i]]
  return lm


def _identity_fields(p, n, feats, s, t, rng):
  """Candidate identity deformations (F, V, 3) in mm at one standard deviation.

  p, n: base points and normals (V, 3); feats: named feature heights (V,); s, t: the grid
  parameters scaled to [-1, 1] (V,); rng: the only source of randomness of the model.
  """
  x, y, z = p[:, 0], p[:, 1], p[:, 2]
  ax, sx, zero = np.abs(x), np.sign(x), np.zeros_like(x)
  vec = lambda dx=zero, dy=zero, dz=zero: np.stack([dx + zero, dy + zero, dz + zero], -1)
  along = lambda f: n * f[:, None]
  lip_w = _gauss(x, y - MOUTH_Y, 25.0, 10.0)
  sym = [  # proportions and positions as warps; feature sizes as scaled features
      vec(dx=0.04 * x), vec(dz=0.035 * np.minimum(z, 0.0)), vec(dy=0.04 * np.minimum(y + 10, 0)),
      vec(dy=0.07 * np.maximum(y - 15.0, 0.0)), vec(dx=0.08 * x * _sigmoid((-55.0 - y) / 12.0)),
      vec(dx=4.0 * sx * _gauss(ax - 60.0, y + 10.0, 15.0, 18.0)),
      vec(dz=-0.0015 * np.maximum(y - 20.0, 0.0) ** 2),
      vec(dy=-4.0 * _sigmoid((-92.0 - y) / 6.0) * np.exp(-0.5 * (x / 35.0) ** 2)),
      along(0.18 * feats["nose"]), along(2.5 * _gauss(x, y + 15.0, 6.0, 12.0)),
      vec(dx=0.18 * x * _gauss(x, y + 40.0, 14.0, 8.0)),
      vec(dy=-3.0 * _gauss(x, y + 38.0, 14.0, 9.0)),
      vec(dx=2.5 * sx * _gauss(ax - EYE_X, y - EYE_Y, 14.0, 10.0)),
      vec(dy=2.0 * _gauss(ax - EYE_X, y - EYE_Y, 16.0, 10.0)),
      along(0.3 * feats["socket"] + 0.2 * feats["eyeball"]), along(0.5 * feats["brow"]),
      along(0.6 * feats["cheek"]), along(0.35 * feats["upper_lip"]),
      along(0.35 * feats["lower_lip"]), vec(dx=0.1 * x * lip_w), vec(dy=2.5 * lip_w),
      along(0.5 * feats["chin"]), along(0.4 * feats["muzzle"]),
  ]
  anti = [vec(dx=2.0 * _gauss(x, y + 30.0, 12.0, 15.0)),
          vec(dx=2.0 * _sigmoid((-60.0 - y) / 10.0)),
          vec(dy=1.2 * sx * _gauss(ax - EYE_X, y - EYE_Y, 14.0, 10.0))]
  designed = np.stack(sym + anti) * rng.uniform(0.7, 1.3, (len(sym) + len(anti), 1, 1))
  # Random smooth fields: Legendre polynomials of the grid parameters, with mirror parity
  # (x flips under the mirror, so a symmetric field has dx odd and dy, dz even in s).
  deg = 4
  vander = legendre.legvander2d(s, t, [deg, deg])  # (V, 25), column j * 5 + k = P_j(s) P_k(t)
  j, k = np.divmod(np.arange((deg + 1) ** 2), deg + 1)
  # No constant or linear terms: those are translations and shears the pose already covers.
  decay = (j + k >= 2) / (1.0 + j + k) ** 2
  n_sym, n_anti = 36, 12
  coef = rng.standard_normal((n_sym + n_anti, 3, vander.shape[1])) * decay
  odd = (j % 2 == 1)
  want_odd = np.array([[True, False, False]] * n_sym + [[False, True, True]] * n_anti)
  coef *= (odd[None, None, :] == want_odd[:, :, None])
  rand = np.einsum("vc,fdc->fvd", vander, coef)
  rms = np.sqrt((rand ** 2).sum(-1).mean(-1))[:, None, None]
  amp = np.concatenate([rng.uniform(0.3, 0.8, n_sym), rng.uniform(0.15, 0.4, n_anti)])
  return np.concatenate([designed, rand / rms * amp[:, None, None]])


def _expression_fields(p, n, z):
  """Localised blendshapes (len(EXPRESSIONS), V, 3), in mm at a coefficient of 1.

  p, n: base surface points and normals (V, 3), which place the regions; z: depth of the mean
  (V,), which the jaw rotates.
  """
  x, y = p[:, 0], p[:, 1]
  ax, sx, zero = np.abs(x), np.sign(x), np.zeros_like(x)
  vec = lambda dx=zero, dy=zero, dz=zero: np.stack([dx + zero, dy + zero, dz + zero], -1)
  line, lip_u, lip_l, mouth_r2 = _lip_lines(x)
  upper, lower, eye_r2 = _lids(ax)
  eye_w = _sigmoid((EYE_HALF + 1.0 - np.abs(ax - EYE_X)) / 1.0)
  # Lower jaw: split sharply at the lip line, softly through the cheeks beside the mouth.
  soft = 0.8 + 14.0 * _sigmoid((ax - MOUTH_HALF - 3.0) / 2.5)
  jaw = _sigmoid((line - 2.0 * _sigmoid((ax - MOUTH_HALF) / 2.0) - y) / soft)
  # Hinge rotation near the ear plus the condyle's forward slide: the chin goes down and back.
  phi, pivot_y, pivot_z = 0.05, -5.0, -80.0
  lips_u = _sigmoid((lip_u + 2.0 - y) / 1.5) * _sigmoid((y - line) / 0.7) * np.sqrt(mouth_r2)
  lips_l = _sigmoid((y - lip_l + 2.0) / 1.5) * _sigmoid((line - y) / 0.7) * np.sqrt(mouth_r2)
  corner = _gauss(ax - MOUTH_HALF, y - MOUTH_Y, 9.0, 8.0)
  cheek_up = _gauss(ax - 38.0, y + 45.0, 14.0, 12.0)
  # Blink: the aperture collapses onto the lower lid, the upper lid slides down over it;
  # a coefficient of 3 closes the eye.
  gap = np.maximum(upper - lower, 0.0)
  inside = (y >= lower) & (y <= upper)
  # The lid margin is ~1.5 mm thick: it moves whole, then the skin above follows less and less.
  close = np.where(inside, y - lower, gap * np.exp(-np.maximum(y - upper - 1.5, 0.0) / 6.0))
  close = close * (y >= lower) * eye_w * (eye_r2 > 0) / 3.0
  blink = vec(dy=-close, dz=0.5 * close)
  below_lid = np.exp(-np.maximum(lower - y, 0.0) / 6.0) * (y < lower + 0.5)
  squint = vec(dy=1.2 * below_lid * eye_w * _sigmoid((25.0 - np.abs(y - EYE_Y)) / 3.0)
               + 1.0 * _gauss(ax - 34.0, y + 15.0, 10.0, 8.0))
  brow_w = _sigmoid((58.0 - ax) / 5.0) * _sigmoid((y - upper - 2.0) / 1.5) * np.where(
      y < 18.0, 1.0, np.exp(-(y - 18.0) / 35.0))
  smile = vec(dx=3.0 * sx * corner, dy=2.5 * corner + 1.5 * cheek_up,
              dz=-1.5 * corner + 1.0 * cheek_up)
  left = _sigmoid(x / 3.0)
  fields = {
      "jaw_open": vec(dy=(-phi * (z - pivot_z) - 1.0) * jaw, dz=(phi * (y - pivot_y) + 2.0) * jaw),
      "smile": smile,
      "pucker": vec(dx=-0.15 * x * _gauss(x, y - MOUTH_Y, 18.0, 10.0),
                    dz=3.5 * _gauss(x, y - MOUTH_Y, 16.0, 8.0)),
      "mouth_corner_down": vec(dx=0.5 * sx * corner,
                               dy=-2.5 * _gauss(ax - MOUTH_HALF, y - MOUTH_Y + 2.0, 8.0, 8.0)),
      "lip_press": vec(dy=-0.8 * lips_u + 0.8 * lips_l, dz=-2.0 * (lips_u + lips_l)),
      "jaw_sideways": vec(dx=2.5 * jaw),
      "blink": blink,
      "squint": squint,
      "brow_raise": vec(dy=3.0 * brow_w, dz=0.3 * brow_w),
      "frown": vec(dx=-2.0 * sx, dy=-2.5, dz=1.0) * _gauss(ax - 20.0, y - 16.0, 10.0, 8.0)[:, None],
      "cheek_puff": n * 3.0 * _gauss(ax - 40.0, y + 58.0, 14.0, 14.0)[:, None],
      "wink_left": blink * left[:, None],
      "smile_left": smile * left[:, None],
      "mouth_left": vec(dx=3.0 * _gauss(x, y - MOUTH_Y, 22.0, 10.0)),
  }
  return np.stack([fields[name] for name in EXPRESSIONS])


def synthetic_model(num_vertices: int = 6000, num_id: int = 40, num_exp: int = 10,
                    seed: int = 0) -> MorphableModel:
  """The procedural face model (module docstring), deterministic from `seed`.

  num_vertices: approximate vertex count V (grid resolution follows it; 2k to 60k is sensible).
  num_id: identity components K (PCA of the candidate fields, decaying std).
  num_exp: expression blendshapes E, the first E of `EXPRESSIONS`.
  """
  if num_vertices < 500:
    raise ValueError(f"num_vertices={num_vertices}: the synthetic face needs at least 500")
  if not 0 <= num_exp <= len(EXPRESSIONS):
    raise ValueError(f"num_exp={num_exp}: the synthetic model has {len(EXPRESSIONS)} expressions")
  rng = np.random.default_rng(seed)
  theta, y = _grid(num_vertices)
  n_v, n_t = theta.shape
  base = _base_surface(theta, y)
  normal = _grid_normals(base)
  feats = {k: f * _front_mask(theta) for k, f in _features(base[..., 0], y).items()}
  mean = base + normal * sum(feats.values())[..., None]
  sym = np.arange(n_v * n_t).reshape(n_v, n_t)[:, ::-1].reshape(-1)
  lm = _landmarks(theta, base, sym, (n_t - 1) // 2)

  flat = lambda a: a.reshape(-1, *a.shape[2:])
  p, n = flat(base), flat(normal)
  feats = {k: flat(f) for k, f in feats.items()}
  s = flat(theta) / THETA_MAX
  t = 2.0 * (flat(y) - Y_CHIN) / (Y_TOP - Y_CHIN) - 1.0
  cand = _identity_fields(p, n, feats, s, t, rng)
  if cand.shape[0] < num_id:
    raise ValueError(f"num_id={num_id}: the synthetic model has at most {cand.shape[0]}")
  # PCA of the candidates (each an independent unit-variance deformation): eigenvectors of
  # F F^T give the orthonormal basis F^T u / sqrt(lambda) with std sqrt(lambda).
  f_FxD = cand.reshape(cand.shape[0], -1)
  lam, u = np.linalg.eigh(f_FxD @ f_FxD.T)
  order = np.argsort(lam)[::-1][:num_id]
  lam, u = lam[order], u[:, order]
  id_std = np.sqrt(lam)
  id_basis = u.T @ f_FxD  # = (orthonormal F^T u / std) * std
  exp = _expression_fields(p, n, flat(mean)[:, 2])[:num_exp]
  exp_std = np.sqrt((exp ** 2).sum((1, 2)))
  return build_model(flat(mean), id_basis.reshape(num_id, -1, 3), exp,
                     _triangles(n_v, n_t), lm, id_std_K=id_std, exp_std_E=exp_std,
                     symmetry_V=sym, name="synthetic", source="synthetic_model")
