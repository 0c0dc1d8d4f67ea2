"""The networks of the CPR regression (§2.3-2.5, Fig. 4b/c): building blocks.

* `CprEncoder`: a CNN over one CPR input of Eq. 4 (3 channels of N x N, channels last here),
  six conv layers (the sixth is where two CPR branches exchange features in Fig. 4c), then
  a read-out to a feature vector: global mean pooling, or (`pool="flatten"`) a dense layer
  over the whole sixth-layer map, which keeps *where* in the CPR a feature is.
* `RecurrentHead`: a GRU cell carrying the hidden state h of Eq. 4 across the q stages and a
  linear read-out of the update Δφ; initialised near zero, so the first updates are small.
* `BetaNet`: Eq. 7's "deep neural network with few hidden layers" from the 2M path errors to
  the step weight β, forced into (0, 2) by 2·sigmoid.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

NUM_CONV = 6


class CprEncoder(nn.Module):
  """(B, N, N, C) -> features (B, F); `layers_to_6` exposes the sixth layer for fusion.

  pool: "mean" averages the sixth-layer map over positions; "flatten" reads all of it. A cell
  (i, j) of a CPR is a fixed vertex pair (the layout is fixed), so its position says which
  pair it is: mean pooling throws that away and leaves the network a bag of local patterns,
  which cannot tell a pitch error (vertical pairs stretched) from a yaw error (horizontal
  ones). Measured on clean true DAFIs in issue 12 (the regressor's floor)."""
  width: int = 32
  features: int = 128
  pool: str = "mean"

  def setup(self):
    # Stride 2 on every other layer: N = 256 ends at 32 x 32 after six layers.
    self.convs = [nn.Conv(self.width * (1 + i // 2), (3, 3),
                          strides=(2, 2) if i % 2 == 0 else (1, 1)) for i in range(NUM_CONV)]
    self.dense = nn.Dense(self.features)

  def layers_to_6(self, x):
    # No normalisation layers: the information is in the *level* of the CPR differences (a
    # scale error makes every Λ_s ratio 1/k; GroupNorm would divide that away and leave the
    # network blind to how large the error is).
    for conv in self.convs:
      x = nn.relu(conv(x))
    return x

  def head(self, x):
    if self.pool == "flatten":
      return nn.relu(self.dense(x.reshape(x.shape[0], -1)))
    return nn.relu(self.dense(x.mean(axis=(1, 2))))

  def __call__(self, cpr_BxNxNxC):
    return self.head(self.layers_to_6(cpr_BxNxNxC))


class RecurrentHead(nn.Module):
  """(h (B, H), features (B, F)) -> (h', Δφ (B, out_dim))."""
  hidden: int = 128
  out_dim: int = 1

  @nn.compact
  def __call__(self, h_BxH, feat_BxF):
    h, _ = nn.GRUCell(self.hidden, name="gru")(h_BxH, feat_BxF)
    delta = nn.Dense(self.out_dim, kernel_init=nn.initializers.normal(1e-3), name="out")(h)
    return h, delta


class BetaNet(nn.Module):
  """Eq. 7: β = Φ_DNN([e_1 ... e_2M]) in (0, 2). Errors are scaled by their first entry so β
  depends on the error's shape along the path, not on the face's size in the image."""
  hidden: int = 32

  @nn.compact
  def __call__(self, errors_Bx2M):
    e = errors_Bx2M / jnp.maximum(errors_Bx2M[:, :1], 1e-6)
    x = nn.relu(nn.Dense(self.hidden)(jnp.log(jnp.maximum(e, 1e-6))))
    x = nn.relu(nn.Dense(self.hidden)(x))
    return 2.0 * nn.sigmoid(nn.Dense(1)(x))[:, 0]


class CrossFusion(nn.Module):
  """Fig. 4c: two CPR branches (DAFI vertices C1, 68 landmarks C2) exchange features at the
  sixth layer. Their feature maps differ in size (N1 != N2), so each branch receives the other's
  globally pooled sixth-layer features, projected and added to every position; each branch then
  has its own read-out (Eq. 8 adds the two branches' weighted updates).

  __call__(cpr1, cpr2=None, has2_B=None) -> (f1, f2 or None). Without cpr2 (no landmarks, or a
  model trained without fusion) only the DAFI branch runs and receives no crossing term; has2_B
  (B,) in {0, 1} switches the crossing off per example (landmark dropout, a failed detector),
  so one network serves images with and without landmarks."""
  width: int = 32
  features: int = 128
  pool: str = "mean"

  @nn.compact
  def __call__(self, cpr1_BxNxNxC, cpr2_BxMxMxC=None, has2_B=None):
    enc1 = CprEncoder(self.width, self.features, self.pool, name="branch_dafi")
    a = enc1.layers_to_6(cpr1_BxNxNxC)
    if cpr2_BxMxMxC is None:
      return enc1.head(a), None
    enc2 = CprEncoder(self.width, self.features, self.pool, name="branch_landmarks")
    b = enc2.layers_to_6(cpr2_BxMxMxC)
    has = (jnp.ones(a.shape[:1]) if has2_B is None else has2_B.astype(a.dtype))[:, None, None, None]
    c = a.shape[-1]
    a_x = a + has * nn.Dense(c, name="cross_to_dafi")(b.mean(axis=(1, 2)))[:, None, None, :]
    b_x = b + nn.Dense(c, name="cross_to_landmarks")(a.mean(axis=(1, 2)))[:, None, None, :]
    return enc1.head(a_x), enc2.head(b_x)
