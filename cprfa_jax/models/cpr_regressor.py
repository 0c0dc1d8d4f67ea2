"""Round 1 of the CPR fit (§2.3, Eq. 4): recurrent regressors updating the parameter groups in
the order of the weak-perspective projection.

Per stage q (q = 1 .. `num_stages`, a `nn.scan` carrying the hidden states h):

    α       += Φ_RNN0(Λ_rxy^G - Λ_rxy^O; h_α)
    [rx,ry] += Φ_RNN1(Λ_rxy^G - Λ_rxy^O; h_rxy)
    r_z     += Φ_RNN2(Λ_rz^G - Λ_rz^O; h_rz)
    s       += Φ_RNN3(Λ_s^G / Λ_s^O; h_s)
    t       += mean of the non-zero Λ_t            (§3.2: the RNN for t "produces little
                                                    improvement over direct estimation")

and Λ^G is rebuilt from the updated parameters before the next group reads it, so each group
sees the others' corrections: that is what makes the updates sequential rather than parallel.
Round 1 uses β = 1 (§2.4). Initialisation: p0 = [0, 0, 0, 1, 0, 0], α0 = 0 (§2.3).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from cprfa_jax import cpr
from cprfa_jax.geometry.projection import project
from cprfa_jax.mm.model import shape
from cprfa_jax.models.cpr_net import CprEncoder, RecurrentHead

GROUPS = ("alpha", "rxy", "rz", "s")    # Eq. 4's order; t follows from Λ_t


def generated_points(model3d, sel_C, alpha_BxA, pose_Bx6):
  """Y^G of the C selected vertices (B, C, 2) for the current parameters (Eq. 1, Eq. 2)."""
  k = model3d.num_id

  def one(alpha, pose):
    verts = shape(model3d, alpha[:k], alpha[k:])
    return project(verts[sel_C], pose)

  return jax.vmap(one)(alpha_BxA, pose_Bx6)


def group_input(inputs: cpr.CprInputs, group: str):
  """The Eq. 4 input of a group, channels last: (B, N, N, 3)."""
  x = {"alpha": inputs.rxy, "rxy": inputs.rxy, "rz": inputs.rz, "s": inputs.s}[group]
  return jnp.moveaxis(x, 1, -1)


def apply_update(alpha, pose, group: str, delta, beta=1.0):
  """φ += β Δφ for one group (Eq. 4/5)."""
  beta = jnp.reshape(beta, (-1, 1)) if jnp.ndim(beta) else beta
  if group == "alpha":
    return alpha + beta * delta, pose
  sl = {"rxy": slice(0, 2), "rz": slice(2, 3), "s": slice(3, 4), "t": slice(4, 6)}[group]
  return alpha, pose.at[:, sl].add(beta * delta)


class _Stage(nn.Module):
  """One recurrent stage: the groups in Eq. 4's order, each reading a freshly rebuilt Λ^G."""
  num_alpha: int
  width: int
  features: int
  hidden: int

  @nn.compact
  def __call__(self, carry, model3d, sel_C, layout_3xN, y_obs_BxCx2, det_BxC):
    (alpha, pose), hidden = carry
    out_dims = {"alpha": self.num_alpha, "rxy": 2, "rz": 1, "s": 1}
    new_hidden, seen = {}, {}
    for g in GROUPS:
      y_gen = generated_points(model3d, sel_C, alpha, pose)
      inputs = cpr.batched_cpr_inputs(y_obs_BxCx2, y_gen, det_BxC, layout_3xN)
      x = group_input(inputs, g)
      seen[g] = x
      feat = CprEncoder(self.width, self.features, name=f"enc_{g}")(x)
      new_hidden[g], delta = RecurrentHead(self.hidden, out_dims[g], name=f"rnn_{g}")(hidden[g], feat)
      alpha, pose = apply_update(alpha, pose, g, delta)
    y_gen = generated_points(model3d, sel_C, alpha, pose)
    t_err = jax.vmap(cpr.translation_from_cpr)(
        cpr.batched_cpr_inputs(y_obs_BxCx2, y_gen, det_BxC, layout_3xN).t)
    alpha, pose = apply_update(alpha, pose, "t", t_err)
    return ((alpha, pose), new_hidden), ((alpha, pose), seen)


class CprRegressor(nn.Module):
  """Round 1 of CPRFA. __call__(model3d, sel_C, layout_3xN, y_obs_BxCx2, det_BxC) ->
  (alpha (B, K+E), pose (B, 6)) after `num_stages` stages, plus per-stage parameters and the
  group inputs each stage saw (for tests and Fig. 3-style pictures)."""
  num_alpha: int
  num_stages: int = 3
  width: int = 16
  features: int = 64
  hidden: int = 64

  @nn.compact
  def __call__(self, model3d, sel_C, layout_3xN, y_obs_BxCx2, det_BxC):
    b = y_obs_BxCx2.shape[0]
    alpha0 = jnp.zeros((b, self.num_alpha), jnp.float32)
    pose0 = jnp.tile(jnp.array([0, 0, 0, 1, 0, 0], jnp.float32), (b, 1))    # §2.3's p0
    hidden0 = {g: jnp.zeros((b, self.hidden), jnp.float32) for g in GROUPS}
    stages = nn.scan(_Stage, variable_broadcast="params", split_rngs={"params": False},
                     in_axes=(nn.broadcast,) * 5, length=self.num_stages)
    ((alpha, pose), _), (per_stage, seen) = stages(
        self.num_alpha, self.width, self.features, self.hidden, name="stages")(
            ((alpha0, pose0), hidden0), model3d, sel_C, layout_3xN, y_obs_BxCx2, det_BxC)
    return alpha, pose, per_stage, seen
