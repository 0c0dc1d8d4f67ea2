"""The 68-landmark heatmap network (the role FAN-3D plays in §2.5's CPR fusion).

A small U-Net (the HS-U-Net's `ConvBlock`) whose decoder stops at 1/2 resolution: one heatmap
logit map per landmark. Each map is a spatial softmax; its expectation (soft-argmax) is the
landmark, so the output is sub-pixel and differentiable, and a landmark hidden by the face or an
occluder is still predicted (it is labelled, as FAN-3D's are). The loss pairs a KL divergence to
a Gaussian around the true landmark (a dense signal for every cell) with an L1 on the
soft-argmax coordinates (what the pipeline consumes, and what the KL alone does not make
unbiased: a diffuse map's tails pull its mean inwards).

An expectation over the grid stays inside it: a landmark outside the image (the crops frame the
landmark box at about half the image side, so this is rare) is predicted at the nearest border.

Coordinates are the data set's: input-image pixels, x right, y down, 0-based pixel centres.
Output cell j at stride s covers input pixels s*j .. s*j + s - 1, so its centre is at
s*j + (s - 1) / 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cprfa_jax.nets.hs_unet import ConvBlock, encoder

NUM_LANDMARKS = 68
STRIDE = 2                      # heatmaps at 1/2 of the input: soft-argmax recovers sub-pixels
COORD_WEIGHT = 50.0             # L1 (fraction of the image side) vs KL (nats); 50 beat 10
CONFIDENCE_RADIUS = 2.0         # heatmap cells around the estimate whose mass is the confidence


class LandmarkNet(nn.Module):
  """widths: channels per level, shallowest first; len(widths) - 1 down-samplings (>= 1).
  (B, H, W, 3) preprocessed image -> (B, H/2, W/2, 68) heatmap logits."""
  widths: Sequence[int] = (16, 32, 64, 128)

  @nn.compact
  def __call__(self, image_BxHxWx3):
    if len(self.widths) < 2:
      raise ValueError(f"LandmarkNet needs at least 2 levels for its 1/2-resolution output, "
                       f"got widths={tuple(self.widths)}")
    x, skips = encoder(self.widths, image_BxHxWx3)
    # Up to 1/2 only: the full-resolution skip is not merged back (heatmaps are at stride 2).
    for w, skip in zip(reversed(self.widths[1:-1]), reversed(skips[1:])):
      x = nn.ConvTranspose(w, (2, 2), strides=(2, 2))(x)
      x = ConvBlock(w)(jnp.concatenate([x, skip], -1))
    return nn.Conv(NUM_LANDMARKS, (1, 1))(x)


def _grid(hw_out, stride):
  """Input-pixel coordinates of the output cell centres: xs (w,), ys (h,)."""
  h, w = hw_out
  c = (stride - 1) / 2.0
  return jnp.arange(w, dtype=jnp.float32) * stride + c, jnp.arange(h, dtype=jnp.float32) * stride + c


def heatmap_targets(landmarks_px_Bx68x2, hw_out, sigma: float, stride: int = STRIDE):
  """Gaussians exp(-d^2 / 2 sigma^2), peak 1 at each landmark: (B, 68, 2) -> (B, h, w, 68).
  `sigma` is in output cells; `landmarks_px` in input pixels."""
  xs, ys = _grid(hw_out, stride)
  lm = jnp.asarray(landmarks_px_Bx68x2, jnp.float32) / stride     # in output cells
  dx = xs[None, None, :, None] / stride - lm[:, None, None, :, 0]   # (B, 1, w, 68)
  dy = ys[None, :, None, None] / stride - lm[:, None, None, :, 1]   # (B, h, 1, 68)
  return jnp.exp(-(dx ** 2 + dy ** 2) / (2.0 * sigma ** 2))


def _softmax_hw(logits_BxhxWx68):
  b, h, w, k = logits_BxhxWx68.shape
  p = jax.nn.softmax(logits_BxhxWx68.reshape(b, h * w, k).astype(jnp.float32), axis=1)
  return p.reshape(b, h, w, k)


def soft_argmax(logits_BxhxWx68, stride: int = STRIDE):
  """Expected position under each map's spatial softmax, in input pixels.

  Returns landmarks_px (B, 68, 2) and confidence (B, 68): the probability mass within
  CONFIDENCE_RADIUS cells of the estimate (1 for a sharp single peak, low when the map is
  diffuse or has two modes, e.g. an ambiguous occluded landmark).
  """
  p = _softmax_hw(logits_BxhxWx68)
  xs, ys = _grid(logits_BxhxWx68.shape[1:3], stride)
  x = jnp.einsum("bhwk,w->bk", p, xs)
  y = jnp.einsum("bhwk,h->bk", p, ys)
  d2 = ((xs[None, None, :, None] - x[:, None, None, :]) ** 2
        + (ys[None, :, None, None] - y[:, None, None, :]) ** 2)
  near = d2 <= (CONFIDENCE_RADIUS * stride) ** 2
  conf = jnp.sum(jnp.where(near, p, 0.0), axis=(1, 2))
  return jnp.stack([x, y], -1), conf


def landmark_loss(logits_BxhxWx68, landmarks_px_Bx68x2, sigma: float, stride: int = STRIDE,
                  coord_weight: float = COORD_WEIGHT):
  """KL(Gaussian target || spatial softmax) + coord_weight * L1 of the soft-argmax divided by
  the image side. Returns (loss, metrics dict); `px_err` is the mean Euclidean error in pixels."""
  b, h, w, k = logits_BxhxWx68.shape
  gt = jnp.asarray(landmarks_px_Bx68x2, jnp.float32)
  g = heatmap_targets(gt, (h, w), sigma, stride)
  # Normalised on the grid; a landmark far off the grid has no target mass and no KL term.
  target = g / jnp.maximum(g.sum((1, 2), keepdims=True), 1e-12)
  logp = jax.nn.log_softmax(logits_BxhxWx68.reshape(b, h * w, k).astype(jnp.float32), axis=1)
  t = target.reshape(b, h * w, k)
  kl = jnp.sum(t * (jnp.log(jnp.maximum(t, 1e-12)) - logp), axis=1).mean()
  pred, _ = soft_argmax(logits_BxhxWx68, stride)
  l1 = jnp.abs(pred - gt).mean() / (h * stride)
  loss = kl + coord_weight * l1
  px_err = jnp.linalg.norm(pred - gt, axis=-1).mean()
  return loss, {"loss": loss, "kl": kl, "coord_l1": l1, "px_err": px_err}
