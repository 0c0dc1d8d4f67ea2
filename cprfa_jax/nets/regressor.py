"""The CPR fit (§2.3-2.5, Eq. 4-8): recurrent regressors updating the parameter groups in the
order of the weak-perspective projection, in two rounds, optionally fused with a landmark CPR.

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

Fusion (§2.5, Fig. 4c, Eq. 8): with `fusion`, a second CPR built from 68 landmarks runs beside
the DAFI CPR for every group; the two CNNs exchange features at the sixth layer
(`CrossFusion`), each branch has its own recurrent read-out and (round 2) its own β, and the
updates add: φ += β_C1 Δφ_C1 + β_C2 Δφ_C2. A fused network also runs without landmarks (the
landmark branch is skipped, per example or for the whole batch).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cprfa_jax import cpr
from cprfa_jax.cpr import path
from cprfa_jax.geometry.projection import project
from cprfa_jax.mm.model import vertices
from cprfa_jax.nets.cpr_net import BetaNet, CrossFusion, RecurrentHead

GROUPS = ("alpha", "rxy", "rz", "s")    # Eq. 4's order; t follows from Λ_t
POSE_SLICES = {"rxy": slice(0, 2), "rz": slice(2, 3), "s": slice(3, 4), "t": slice(4, 6)}


def generated_points(model3d, sel_C, alpha_BxA, pose_Bx6):
  """Y^G of the C selected vertices (B, C, 2) for the current parameters (Eq. 1, Eq. 2)."""
  def one(alpha, pose):
    return project(vertices(model3d, alpha)[sel_C], pose)

  return jax.vmap(one)(alpha_BxA, pose_Bx6)


def group_input(inputs: cpr.CprInputs, group: str):
  """The Eq. 4 input of a group, channels last: (B, N, N, 3). The s group reads
  Λ_s^G / Λ_s^O - 1 on the detected pairs: the same information as the ratio, but a perfect
  scale and a missing pair both read 0, so "no evidence" and "no error" agree."""
  if group == "s":
    x = jnp.where(inputs.s != 0, inputs.s - 1.0, 0.0)
  else:
    x = {"alpha": inputs.rxy, "rxy": inputs.rxy, "rz": inputs.rz}[group]
  return jnp.moveaxis(x, 1, -1)


def apply_update(alpha, pose, group: str, delta, beta=1.0):
  """φ += β Δφ for one group (Eq. 4/5)."""
  beta = jnp.reshape(beta, (-1, 1)) if jnp.ndim(beta) else beta
  if group == "alpha":
    return alpha + beta * delta, pose
  return alpha, pose.at[:, POSE_SLICES[group]].add(beta * delta)


class PathSample(NamedTuple):
  """κ's sample of the detected vertices for Eq. 6 (`sample_path_vertices`): which vertices,
  their 3D positions under round 1's α (fixed in round 2), their DAFI observations and which
  of the K entries are real (the first round(κ · #detected))."""
  idx: jnp.ndarray                         # (B, K) int, of all V vertices
  verts: jnp.ndarray                       # (B, K, 3)
  y_obs: jnp.ndarray                       # (B, K, 2)
  valid: jnp.ndarray                       # (B, K) bool


def sample_path_vertices(model3d, alpha_BxA, y_all_BxVx2, det_all_BxV, key, kappa: float,
                         k_max: int) -> PathSample:
  """round(κ · #detected) of each example's detected vertices (`path.sample_vertices`), in
  arrays of K = k_max. α is not updated in round 2 (§2.3), so the sample's 3D positions are
  computed here once, not at every one of the 2M path points of every group and stage."""
  def one(key, alpha, y_all, det):
    idx, valid = path.sample_vertices(key, det, kappa, k_max)
    return idx, vertices(model3d, alpha)[idx], y_all[idx], valid

  return PathSample(*jax.vmap(one)(example_keys(key, alpha_BxA.shape[0]), alpha_BxA,
                                   y_all_BxVx2, det_all_BxV))


def example_keys(key, b: int):
  """Per-example keys (B, 2): one key is split B ways (training: every example of a batch draws
  its own sample); a (B, 2) array is taken as it is (inference passes the same key for every
  image, so a face's fit does not depend on its batch or its place in it)."""
  key = jnp.asarray(key)
  return jax.random.split(key, b) if key.ndim == 1 else key


def group_path_errors(pose_Bx6, group, delta_BxP, sample: PathSample, m: int):
  """Eq. 6 for a batch: errors (B, 2M) along pose[group] + (k/M) Δφ over the κ-sampled
  vertices, the other pose parameters held."""
  sl = POSE_SLICES[group]

  def one(pose, delta, verts, y_obs, valid):
    proj = lambda phi: project(verts, pose.at[sl].set(phi))
    return path.path_errors(proj, pose[sl], delta, y_obs, valid, m)

  return jax.vmap(one)(pose_Bx6, delta_BxP, sample.verts, sample.y_obs, sample.valid)


class Observations(NamedTuple):
  """What the fit sees of one batch, in normalised image coordinates (`geometry.projection`).

  y_sel / det_sel: the DAFI-decoded positions of the C selected vertices and their flags;
  y_all / det_all: every model vertex (round 2's κ-sampled errors, Eq. 6), optional;
  y_lm / det_lm: 68 landmarks from a detector (fusion, §2.5), optional; an example whose
  det_lm are all False counts as having no landmarks.
  """
  y_sel: jnp.ndarray                       # (B, C, 2)
  det_sel: jnp.ndarray                     # (B, C) bool
  y_all: Optional[jnp.ndarray] = None      # (B, V, 2)
  det_all: Optional[jnp.ndarray] = None    # (B, V) bool
  y_lm: Optional[jnp.ndarray] = None       # (B, 68, 2)
  det_lm: Optional[jnp.ndarray] = None     # (B, 68) bool


def landmark_order(model3d) -> np.ndarray:
  """The 68 landmark indices ordered as the landmark CPR's point list: the 34 with the largest
  mean-shape x (the subject's left half; the 10 midline landmarks split by their small x
  offsets) first, then the other 34, so `cpr.cpr_layout(68)` gives the same channels as the
  DAFI CPR: left half, right half, and every other point of each (N = 34)."""
  # jnp, not np: the model may be a traced argument (`nets.build` jits with it as one).
  x = jnp.asarray(model3d.mean_Vx3)[jnp.asarray(model3d.landmarks_68), 0]
  return jnp.argsort(-x, stable=True).astype(jnp.int32)


def _translation(y_obs, y_gen, det, layout):
  """Λ_t's correction (B, 2) and the number of detected points it rests on (B,)."""
  t = jax.vmap(cpr.translation_from_cpr)(cpr.batched_cpr_inputs(y_obs, y_gen, det, layout).t)
  return t, jnp.sum(det, axis=1).astype(jnp.float32)


class _Stage(nn.Module):
  """One recurrent stage: the groups in Eq. 4's order, each reading a freshly rebuilt Λ^G.
  With `capu` (round 2): no α group, and each update weighted by Eq. 7's β."""
  num_alpha: int
  width: int
  features: int
  hidden: int
  capu: bool = False
  num_path: int = 5          # M of Eq. 6
  pool: str = "mean"         # CprEncoder's read-out

  @nn.compact
  def __call__(self, carry, model3d, sel_C, layout_3xN, lm_idx_68, lm_layout, obs, sampled):
    (alpha, pose), hidden = carry
    out_dims = {"alpha": self.num_alpha, "rxy": 2, "rz": 1, "s": 1}
    use_lm = obs.y_lm is not None
    has_lm = jnp.any(obs.det_lm, axis=1).astype(jnp.float32) if use_lm else None
    new_hidden, seen, betas = {}, {}, {}

    def beta_of(g, name, delta):
      if not self.capu:
        return 1.0
      errors = group_path_errors(pose, g, delta, sampled, self.num_path)
      betas[name] = BetaNet(name=f"beta_{name}")(errors)
      return betas[name]

    for g in GROUPS[1:] if self.capu else GROUPS:
      y_gen = generated_points(model3d, sel_C, alpha, pose)
      x1 = group_input(cpr.batched_cpr_inputs(obs.y_sel, y_gen, obs.det_sel, layout_3xN), g)
      seen[g] = x1
      x2 = None
      if use_lm:
        y_gen_lm = generated_points(model3d, lm_idx_68, alpha, pose)
        x2 = group_input(cpr.batched_cpr_inputs(obs.y_lm, y_gen_lm, obs.det_lm, lm_layout), g)
      f1, f2 = CrossFusion(self.width, self.features, self.pool, name=f"cnn_{g}")(x1, x2, has_lm)
      new_hidden[g], d1 = RecurrentHead(self.hidden, out_dims[g], name=f"rnn_{g}")(hidden[g], f1)
      step = jnp.reshape(beta_of(g, g, d1), (-1, 1)) * d1
      if use_lm:                                   # Eq. 8: the landmark branch's own Δφ and β
        new_hidden[g + "_lm"], d2 = RecurrentHead(self.hidden, out_dims[g], name=f"rnn_lm_{g}")(
            hidden[g + "_lm"], f2)
        d2 = d2 * has_lm[:, None]
        step = step + jnp.reshape(beta_of(g, g + "_lm", d2), (-1, 1)) * d2
      alpha, pose = apply_update(alpha, pose, g, step)
    # t from the mean of the non-zero Λ_t (§3.2); with landmarks, both CPRs' estimates weighted
    # by how many points each rests on (the estimate is direct, so the two must not add).
    t, n = _translation(obs.y_sel, generated_points(model3d, sel_C, alpha, pose), obs.det_sel,
                        layout_3xN)
    if use_lm:
      t2, n2 = _translation(obs.y_lm, generated_points(model3d, lm_idx_68, alpha, pose),
                            obs.det_lm, lm_layout)
      t, n = (n[:, None] * t + n2[:, None] * t2) / jnp.maximum(n + n2, 1)[:, None], n + n2
    alpha, pose = apply_update(alpha, pose, "t", t)
    return ((alpha, pose), new_hidden), ((alpha, pose), seen, betas)


class CprRegressor(nn.Module):
  """CPRFA's two rounds. __call__(model3d, sel_C, layout_3xN, obs: Observations, key=None)
  -> dict with the final `alpha` (B, K+E) and `pose` (B, 6), and per round the per-stage
  parameters (q, B, ...), the DAFI-CPR group inputs each stage saw and (round 2) the β of each
  group and branch. Round 2 runs when `capu` is set; it needs obs.y_all / det_all (Eq. 6's
  errors) and a PRNG key, or per-example keys (B, 2) (`example_keys`), for κ-sampling:
  round(κ · #detected) vertices, in an array of `path.sample_bound(kappa, V, max_sampled).k_max`.
  With `fusion`, obs.y_lm / det_lm feed the landmark branch when given; without them the DAFI
  branch runs alone."""
  num_alpha: int
  num_stages: int = 3
  width: int = 16
  features: int = 64
  hidden: int = 64
  fusion: bool = False
  capu: bool = False
  kappa: float = 0.1
  max_sampled: Optional[int] = None   # None / 0: ceil(κ · V) (`path.sample_bound`); > 0: a cap
  num_path: int = 5
  pool: str = "mean"                  # the CNNs' read-out (`cpr_net.CprEncoder`)

  @nn.compact
  def __call__(self, model3d, sel_C, layout_3xN, obs: Observations, key=None):
    b = obs.y_sel.shape[0]
    if not self.fusion:
      obs = obs._replace(y_lm=None, det_lm=None)
    alpha = jnp.zeros((b, self.num_alpha), jnp.float32)
    pose = jnp.tile(jnp.array([0, 0, 0, 1, 0, 0], jnp.float32), (b, 1))    # §2.3's p0
    # The landmark CPR reads obs.y_lm in `landmark_order`; its layout indexes that order.
    order = landmark_order(model3d)
    lm_idx = jnp.asarray(model3d.landmarks_68)[order]
    lm_layout = jnp.asarray(cpr.cpr_layout(68, seed=1))
    if obs.y_lm is not None:
      obs = obs._replace(y_lm=obs.y_lm[:, order], det_lm=obs.det_lm[:, order])
    out = {}
    if self.capu and (obs.y_all is None or obs.det_all is None or key is None):
      raise ValueError("round 2 (capu) needs obs.y_all, obs.det_all and a key")
    for name, capu in [("round1", False)] + ([("round2", True)] if self.capu else []):
      sampled = None
      if capu:      # after round 1, whose α holds through round 2
        k_max = path.sample_bound(self.kappa, model3d.num_vertices, self.max_sampled).k_max
        sampled = sample_path_vertices(model3d, alpha, obs.y_all, obs.det_all, key, self.kappa,
                                       k_max)
      groups = GROUPS[1:] if capu else GROUPS
      suffixes = ("", "_lm") if obs.y_lm is not None else ("",)
      branches = [g + sfx for g in groups for sfx in suffixes]
      hidden0 = {g: jnp.zeros((b, self.hidden), jnp.float32) for g in branches}
      stages = nn.scan(_Stage, variable_broadcast="params", split_rngs={"params": False},
                       in_axes=(nn.broadcast,) * 7, length=self.num_stages)
      ((alpha, pose), _), (per_stage, seen, betas) = stages(
          self.num_alpha, self.width, self.features, self.hidden, capu, self.num_path, self.pool,
          name=f"stages_{name}")(((alpha, pose), hidden0), model3d, sel_C, layout_3xN, lm_idx,
                                 lm_layout, obs, sampled)
      out[name] = {"alpha": per_stage[0], "pose": per_stage[1], "seen": seen, "beta": betas}
    out["alpha"], out["pose"] = alpha, pose
    return out
