"""HS-U-Net (§2.1, Fig. 2a): an image-to-DAFI U-Net with three groups of outputs.

"The network contains three groups of output layers, and each group outputs a down-sampled (or
the original) DAFI and a corresponding binary mask" — here at 1/4, 1/2 and full resolution,
each 3 DAFI channels (sigmoid, PNCC colours in [0, 1]) and 1 mask logit. L1 on the DAFI inside
the ground-truth mask and cross-entropy on the mask supervise every group ("heavily
supervised"); the full-resolution group is the one decoded into vertices (§2.1).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
import optax


class ConvBlock(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x):
    for _ in range(2):
      x = nn.Conv(self.features, (3, 3), use_bias=False)(x)
      x = nn.GroupNorm(num_groups=min(8, self.features))(x)
      x = nn.relu(x)
    return x


def encoder(widths, x):
  """The U-Net's contracting path, called inside a parent's compact __call__ (its ConvBlocks
  are the parent's submodules): (bottleneck features, skips shallowest first)."""
  skips = []
  for w in widths[:-1]:
    x = ConvBlock(w)(x)
    skips.append(x)
    x = nn.max_pool(x, (2, 2), (2, 2))
  return ConvBlock(widths[-1])(x), skips


class HSUNet(nn.Module):
  """widths: channels per level, shallowest first; len(widths) - 1 down-samplings (>= 2)."""
  widths: Sequence[int] = (16, 32, 64, 128)

  @nn.compact
  def __call__(self, image_BxHxWx3):
    if len(self.widths) < 3:
      raise ValueError(f"HS-U-Net needs at least 3 levels for its 1/4, 1/2, 1/1 outputs, got "
                       f"widths={tuple(self.widths)}")
    x, skips = encoder(self.widths, image_BxHxWx3)
    outputs = []

    def head(x):
      out = nn.Conv(4, (1, 1))(x)
      return nn.sigmoid(out[..., :3]), out[..., 3]

    if len(skips) == 2:                         # three levels: the bottleneck is at 1/4
      outputs.append(head(x))
    for level, (w, skip) in enumerate(zip(reversed(self.widths[:-1]), reversed(skips))):
      x = nn.ConvTranspose(w, (2, 2), strides=(2, 2))(x)
      x = ConvBlock(w)(jnp.concatenate([x, skip], -1))
      if len(skips) - 1 - level <= 2:           # at 1/4, 1/2 and full resolution
        outputs.append(head(x))
    return outputs  # [(dafi (B, H/4, W/4, 3), mask logits (B, H/4, W/4)), ..., full]


def downsample_targets(dafi_BxHxWx3, mask_BxHxW, factor: int):
  """Ground truth at 1/factor: the mask is the fraction of face pixels in each block (a soft
  target for the cross-entropy); the DAFI is the mean colour over the face pixels of the block,
  counted only where the whole block is face, so no averaged code mixes face and background."""
  if factor == 1:
    return dafi_BxHxWx3, mask_BxHxW.astype(jnp.float32), mask_BxHxW.astype(jnp.float32)
  b, h, w, _ = dafi_BxHxWx3.shape
  m = mask_BxHxW.astype(jnp.float32).reshape(b, h // factor, factor, w // factor, factor)
  d = dafi_BxHxWx3.reshape(b, h // factor, factor, w // factor, factor, 3)
  frac = m.mean((2, 4))
  dafi = (d * m[..., None]).sum((2, 4)) / jnp.maximum(m.sum((2, 4)), 1.0)[..., None]
  return dafi, frac, (frac >= 1.0).astype(jnp.float32)


def hs_unet_loss(outputs, dafi_BxHxWx3, mask_BxHxW):
  """Sum over the three groups of L1 (inside the mask) + sigmoid cross-entropy. Returns
  (loss, metrics dict)."""
  full_h = dafi_BxHxWx3.shape[1]
  total, metrics = 0.0, {}
  for pred_dafi, logits in outputs:
    factor = full_h // pred_dafi.shape[1]
    gt_dafi, gt_mask, weight = downsample_targets(dafi_BxHxWx3, mask_BxHxW, factor)
    l1 = (jnp.abs(pred_dafi - gt_dafi).sum(-1) * weight).sum() / jnp.maximum(weight.sum(), 1.0)
    ce = optax.sigmoid_binary_cross_entropy(logits, gt_mask).mean()
    total = total + l1 + ce
    metrics[f"l1_1/{factor}"] = l1
    metrics[f"ce_1/{factor}"] = ce
  metrics["loss"] = total
  return total, metrics
