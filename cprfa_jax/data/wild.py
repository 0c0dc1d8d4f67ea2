""""In-the-wild" corruption of rendered faces: backgrounds, occluders, photometric noise.

The paper's test images (AFLW2000-3D, COFW) differ from its rendered training data by clutter,
occlusion, blur and colour; DAFIs of such images "contain more missing and mis-predicted
pixels" (§2.1, Fig. 2b). These host-side functions (NumPy + OpenCV, per STYLE.md) make
synthetic images with the same troubles and exact ground truth: an occluder hides face pixels in
the image *and* removes them from the ground-truth DAFI mask.

All functions take a `numpy.random.Generator`, so an example is a pure function of its seed.
Images are float32 RGB in [0, 1], (H, W, 3).
"""

from __future__ import annotations

import cv2
import numpy as np


def _colour(rng, lo=0.0, hi=1.0):
  return rng.uniform(lo, hi, 3).astype(np.float32)


def _smooth_noise(rng, hw, scale):
  """Band-limited noise in [0, 1]: white noise at a coarse grid, upsampled bicubically."""
  h, w = hw
  coarse = rng.random((max(2, int(h / scale)), max(2, int(w / scale)))).astype(np.float32)
  return np.clip(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def random_background(rng, hw) -> np.ndarray:
  """A gradient, a coloured texture or clutter of shapes. Returns (H, W, 3) float32."""
  h, w = hw
  kind = rng.integers(3)
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  a = rng.uniform(0, 2 * np.pi)
  ramp = (np.cos(a) * xx / w + np.sin(a) * yy / h)
  ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
  c0, c1 = _colour(rng), _colour(rng)
  img = c0 + ramp[..., None] * (c1 - c0)
  if kind == 1:      # texture: two octaves of coloured noise over the gradient
    tex = 0.6 * _smooth_noise(rng, hw, rng.uniform(3, 20)) + 0.4 * _smooth_noise(rng, hw, 2)
    img = img * (0.5 + tex[..., None]) * _colour(rng, 0.6, 1.0)
  elif kind == 2:    # clutter: rectangles, circles and lines
    for _ in range(rng.integers(5, 15)):
      col = tuple(float(c) for c in _colour(rng))
      p = rng.integers(0, [w, h])
      shape = rng.integers(3)
      if shape == 0:
        q = p + rng.integers(-w // 3, w // 3 + 1, 2)
        cv2.rectangle(img, tuple(int(v) for v in p), tuple(int(v) for v in q), col, -1)
      elif shape == 1:
        cv2.circle(img, tuple(int(v) for v in p), int(rng.integers(2, max(3, w // 5))), col, -1)
      else:
        q = rng.integers(0, [w, h])
        cv2.line(img, tuple(int(v) for v in p), tuple(int(v) for v in q), col,
                 int(rng.integers(1, max(2, w // 20))))
  return np.clip(img, 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------------- occluders

def _hand(rng, alpha, centre, size):
  """A palm ellipse with four or five finger capsules: a hand-like blob."""
  cx, cy = centre
  ang = rng.uniform(0, 360)
  cv2.ellipse(alpha, (int(cx), int(cy)), (int(size * 0.45), int(size * 0.55)), ang, 0, 360, 1, -1)
  for i in range(int(rng.integers(4, 6))):
    a = np.radians(ang - 90 + (i - 2) * 18 + rng.normal(0, 4))
    length = size * rng.uniform(0.7, 1.0)
    tip = (cx + np.cos(a) * length * 1.2, cy + np.sin(a) * length * 1.2)
    cv2.line(alpha, (int(cx), int(cy)), (int(tip[0]), int(tip[1])), 1, max(2, int(size * 0.18)))


def _bar(rng, alpha, centre, size):
  """A thick straight bar (a microphone, a pole, a strap) through the centre."""
  a = rng.uniform(0, np.pi)
  d = np.array([np.cos(a), np.sin(a)]) * size * rng.uniform(1.0, 3.0)
  p, q = np.asarray(centre) - d, np.asarray(centre) + d
  cv2.line(alpha, tuple(int(v) for v in p), tuple(int(v) for v in q), 1,
           max(2, int(size * rng.uniform(0.2, 0.5))))


def _glasses(rng, alpha, left_eye, right_eye):
  """Two lens rings (filled when sunglasses) and a bridge, placed on the eyes."""
  l, r = np.asarray(left_eye, float), np.asarray(right_eye, float)
  dist = max(np.linalg.norm(r - l), 4.0)
  ang = np.degrees(np.arctan2(r[1] - l[1], r[0] - l[0]))
  axes = (int(dist * 0.38), int(dist * 0.28))
  thick = -1 if rng.random() < 0.5 else max(1, int(dist * 0.06))
  for c in (l, r):
    cv2.ellipse(alpha, (int(c[0]), int(c[1])), axes, ang, 0, 360, 1, thick)
  cv2.line(alpha, (int(l[0] + axes[0] * 0.9), int(l[1])), (int(r[0] - axes[0] * 0.9), int(r[1])),
           1, max(1, int(dist * 0.06)))


def random_occluder(rng, hw, landmarks_68x2, kind=None):
  """One occluder over the face. landmarks_68x2 (pixels) place it (hands and bars anywhere on the
  face box, glasses on the eyes). Returns (rgb (H, W, 3) float32, alpha (H, W) bool)."""
  h, w = hw
  alpha = np.zeros(hw, np.uint8)
  lo, hi = landmarks_68x2.min(0), landmarks_68x2.max(0)
  size = max(float(np.sqrt(np.prod(np.maximum(hi - lo, 1.0)))), 6.0)
  centre = rng.uniform(lo, hi)
  kind = kind or rng.choice(["hand", "bar", "glasses", "patch"])
  if kind == "hand":
    _hand(rng, alpha, centre, size * rng.uniform(0.25, 0.45))
  elif kind == "bar":
    _bar(rng, alpha, centre, size * rng.uniform(0.3, 0.6))
  elif kind == "glasses":
    _glasses(rng, alpha, landmarks_68x2[36:42].mean(0), landmarks_68x2[42:48].mean(0))
  elif kind == "patch":
    half = (size * rng.uniform(0.15, 0.35, 2)).astype(int) + 1
    p, q = (centre - half).astype(int), (centre + half).astype(int)
    cv2.rectangle(alpha, tuple(int(v) for v in p), tuple(int(v) for v in q), 1, -1)
  else:
    raise ValueError(f"unknown occluder kind {kind!r}: use hand, bar, glasses or patch")
  if kind == "hand":
    tone = np.array([0.85, 0.62, 0.5]) * rng.uniform(0.4, 1.1)
    rgb = tone * (0.8 + 0.4 * _smooth_noise(rng, hw, 8)[..., None])
  elif kind == "patch":       # a piece of "another image"
    rgb = random_background(rng, hw)
  else:
    rgb = np.broadcast_to(_colour(rng, 0.0, 0.6), (h, w, 3))
  return np.clip(rgb, 0, 1).astype(np.float32), alpha.astype(bool)


# ----------------------------------------------------------------------------------- photometric

def photometric(rng, img_HxWx3, strength=1.0) -> np.ndarray:
  """Colour jitter (gain, contrast, saturation), blur and sensor noise; strength scales all."""
  img = img_HxWx3.astype(np.float32)
  img = img * (1.0 + strength * rng.uniform(-0.25, 0.25, 3)).astype(np.float32)
  mean = img.mean()
  img = mean + (img - mean) * (1.0 + strength * rng.uniform(-0.3, 0.3))
  grey = img.mean(-1, keepdims=True)
  img = grey + (img - grey) * (1.0 + strength * rng.uniform(-0.4, 0.3))
  if rng.random() < 0.5 * strength + 0.1:
    sigma = strength * rng.uniform(0.3, 1.5) * img.shape[0] / 128.0
    img = cv2.GaussianBlur(img, (0, 0), max(sigma, 0.1))
  img = img + rng.normal(0, strength * rng.uniform(0.0, 0.04), img.shape).astype(np.float32)
  return np.clip(img, 0.0, 1.0)


def composite(face_rgb, face_mask, background, occluders=(), foreground=None):
  """Face over background, occluders over both. Returns (image, visible face mask): the mask
  loses every pixel an occluder covers, so the ground-truth DAFI never shows hidden surface.
  foreground: the rendered pixels where they are more than the face's (a head around it)."""
  m = (face_mask if foreground is None else foreground)[..., None]
  img = np.where(m, face_rgb, background)
  visible = face_mask.copy()
  for rgb, alpha in occluders:
    img = np.where(alpha[..., None], rgb, img)
    visible &= ~alpha
  return img.astype(np.float32), visible
