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
