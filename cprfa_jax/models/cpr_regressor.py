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

Round 2 (consistency-aware updating, §2.4) runs the same stages with its own networks
("We trained a different set of networks for consistency-aware parameter updating", §3.2),
leaves α alone ("the parameter α only gets updated in round 1") and weights each pose update
by β = Φ_DNN(e_1 .. e_2M) (Eq. 7) from reprojection errors sampled along the predicted update
(Eq. 6) over κ of all the vertices the DAFI detected.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from cprfa_jax import cpr
from cprfa_jax.geometry.projection import project
from cprfa_jax.mm.model import shape
from cprfa_jax.cpr import path
from cprfa_jax.models.cpr_net import BetaNet, CprEncoder, RecurrentHead

GROUPS = ("alpha", "rxy", "rz", "s")    # Eq. 4's order; t follows from Λ_t
POSE_SLICES = {"rxy": slice(0, 2), "rz": slice(2, 3), "s": slice(3, 4), "t": slice(4, 6)}


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
  return alpha, pose.at[:, POSE_SLICES[group]].add(beta * delta)


def group_path_errors(model3d, alpha_BxA, pose_Bx6, group, delta_BxP, idx_BxK, valid_BxK,
                      y_obs_all_BxVx2, m: int):
  """Eq. 6 for a batch: errors (B, 2M) along pose[group] + (k/M) Δφ over the sampled vertices
  idx (B, K) (of all vertices, `path.sample_vertices`), other parameters held."""
  k_id, sl = model3d.num_id, POSE_SLICES[group]

  def one(alpha, pose, delta, idx, valid, y_all):
    verts = shape(model3d, alpha[:k_id], alpha[k_id:])[idx]
    proj = lambda phi: project(verts, pose.at[sl].set(phi))
    return path.path_errors(proj, pose[sl], delta, y_all[idx], valid, m)

  return jax.vmap(one)(alpha_BxA, pose_Bx6, delta_BxP, idx_BxK, valid_BxK, y_obs_all_BxVx2)


class _Stage(nn.Module):
  """One recurrent stage: the groups in Eq. 4's order, each reading a freshly rebuilt Λ^G.
  With `capu` (round 2): no α group, and each pose update weighted by Eq. 7's β."""
  num_alpha: int
  width: int
  features: int
  hidden: int
  capu: bool = False
  num_path: int = 5          # M of Eq. 6

  @nn.compact
  def __call__(self, carry, model3d, sel_C, layout_3xN, y_obs_BxCx2, det_BxC, sampled):
    (alpha, pose), hidden = carry
    out_dims = {"alpha": self.num_alpha, "rxy": 2, "rz": 1, "s": 1}
    new_hidden, seen, betas = {}, {}, {}
    for g in GROUPS[1:] if self.capu else GROUPS:
      y_gen = generated_points(model3d, sel_C, alpha, pose)
      inputs = cpr.batched_cpr_inputs(y_obs_BxCx2, y_gen, det_BxC, layout_3xN)
      x = group_input(inputs, g)
      seen[g] = x
      feat = CprEncoder(self.width, self.features, name=f"enc_{g}")(x)
      new_hidden[g], delta = RecurrentHead(self.hidden, out_dims[g], name=f"rnn_{g}")(hidden[g], feat)
      beta = 1.0
      if self.capu:
        idx, valid, y_all = sampled
        errors = group_path_errors(model3d, alpha, pose, g, delta, idx, valid, y_all, self.num_path)
        beta = betas[g] = BetaNet(name=f"beta_{g}")(errors)
      alpha, pose = apply_update(alpha, pose, g, delta, beta)
    y_gen = generated_points(model3d, sel_C, alpha, pose)
    t_err = jax.vmap(cpr.translation_from_cpr)(
        cpr.batched_cpr_inputs(y_obs_BxCx2, y_gen, det_BxC, layout_3xN).t)
    alpha, pose = apply_update(alpha, pose, "t", t_err)
    return ((alpha, pose), new_hidden), ((alpha, pose), seen, betas)


class CprRegressor(nn.Module):
  """CPRFA's two rounds. __call__(model3d, sel_C, layout_3xN, y_obs_BxCx2, det_BxC,
  y_obs_all_BxVx2=None, det_all_BxV=None, key=None) -> dict with the final `alpha` (B, K+E) and
  `pose` (B, 6), and per round the per-stage parameters, the group inputs each stage saw and
  (round 2) the β of each group. Round 2 runs when `capu` is set and the observations of all
  vertices (for Eq. 6's errors) and a PRNG key (for κ-sampling) are given."""
  num_alpha: int
  num_stages: int = 3
  width: int = 16
  features: int = 64
  hidden: int = 64
  capu: bool = False
  kappa: float = 0.1
  max_sampled: int = 256
  num_path: int = 5

  @nn.compact
  def __call__(self, model3d, sel_C, layout_3xN, y_obs_BxCx2, det_BxC, y_obs_all_BxVx2=None,
               det_all_BxV=None, key=None):
    b = y_obs_BxCx2.shape[0]
    alpha = jnp.zeros((b, self.num_alpha), jnp.float32)
    pose = jnp.tile(jnp.array([0, 0, 0, 1, 0, 0], jnp.float32), (b, 1))    # §2.3's p0
    out = {}
    rounds = [("round1", False, None)]
    if self.capu:
      if y_obs_all_BxVx2 is None or det_all_BxV is None or key is None:
        raise ValueError("round 2 (capu) needs y_obs_all_BxVx2, det_all_BxV and key")
      keys = jax.random.split(key, b)
      idx, valid = jax.vmap(lambda k, d: path.sample_vertices(k, d, self.kappa, self.max_sampled))(
          keys, det_all_BxV)
      rounds.append(("round2", True, (idx, valid, y_obs_all_BxVx2)))
    for name, capu, sampled in rounds:
      groups = GROUPS[1:] if capu else GROUPS
      hidden0 = {g: jnp.zeros((b, self.hidden), jnp.float32) for g in groups}
      stages = nn.scan(_Stage, variable_broadcast="params", split_rngs={"params": False},
                       in_axes=(nn.broadcast,) * 6, length=self.num_stages)
      ((alpha, pose), _), (per_stage, seen, betas) = stages(
          self.num_alpha, self.width, self.features, self.hidden, capu, self.num_path,
          name=f"stages_{name}")(((alpha, pose), hidden0), model3d, sel_C, layout_3xN,
                                 y_obs_BxCx2, det_BxC, sampled)
      out[name] = {"alpha": per_stage[0], "pose": per_stage[1], "seen": seen, "beta": betas}
    out["alpha"], out["pose"] = alpha, pose
    return out
