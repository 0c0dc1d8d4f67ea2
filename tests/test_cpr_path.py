"""Path-error sampling of consistency-aware updating (§2.4, Eq. 6) against a NumPy loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cprfa_jax.cpr import path
from cprfa_jax.geometry import project


def test_path_steps_are_eq6():
  np.testing.assert_allclose(path.path_steps(5), [0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0])


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), m=st.integers(1, 6))
def test_path_errors_match_naive_loop(seed, m):
  rng = np.random.default_rng(seed)
  x = rng.normal(0, 0.4, (30, 3)).astype(np.float32)
  pose = np.array([0.1, -0.2, 0.05, 1.0, 0.0, 0.0], np.float32)
  true = pose + np.array([0.05, 0.1, -0.1, 0.1, 0.02, -0.03], np.float32)
  y_obs = np.asarray(project(x, true))
  valid = rng.random(30) < 0.7
  delta = (true - pose)[:3] * rng.uniform(0.3, 1.5)   # the rotation group, say

  def project_fn(phi):
    return project(x, jnp.concatenate([phi, jnp.asarray(pose[3:])]))

  got = path.path_errors(project_fn, jnp.asarray(pose[:3]), jnp.asarray(delta), y_obs, valid, m)
  want = []
  for k in range(1, 2 * m + 1):
    p = pose.copy()
    p[:3] += k / m * delta
    d = np.linalg.norm(np.asarray(project(x, p)) - y_obs, axis=-1)
    want.append(d[valid].mean() if valid.any() else 0.0)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_error_is_smallest_where_the_path_meets_the_truth():
  x = np.random.default_rng(0).normal(0, 0.4, (40, 3)).astype(np.float32)
  pose = np.array([0.0, 0.0, 0.0, 1.0, 0.0, 0.0], np.float32)
  y_obs = np.asarray(project(x, pose + np.array([0, 0, 0.2, 0, 0, 0], np.float32)))
  project_fn = lambda rz: project(x, jnp.concatenate([pose[:2], rz, pose[3:]]))
  # Δφ is half of the true update: the minimum is at step 2 (index 9 of 10, k = 2M).
  e = path.path_errors(project_fn, jnp.zeros(1), jnp.array([0.1]), y_obs, np.ones(40, bool), 5)
  assert int(jnp.argmin(e)) == 9
  # Δφ overshoots 2.5x: the best multiplier is 0.4 = k/M with k = 2, index 1.
  e = path.path_errors(project_fn, jnp.zeros(1), jnp.array([0.5]), y_obs, np.ones(40, bool), 5)
  assert int(jnp.argmin(e)) == 1


def _numpy_count(kappa, n_det, k_max):
  """The sample size by hand: round(κ · #detected) (half to even, as jnp.round), at least one
  vertex when any is detected, at most k_max."""
  n = int(np.round(np.float32(kappa) * np.float32(n_det)))
  return min(max(n, min(n_det, 1)), k_max)


@settings(max_examples=30, deadline=None)
@given(num_vertices=st.integers(1, 3000), kappa=st.floats(0.01, 1.0),
       frac=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1))
def test_derived_bound_takes_kappa_of_the_detected_uncapped(num_vertices, kappa, frac, seed):
  """With the bound derived from V (max_sampled None/0), exactly round(κ · #detected) distinct
  detected vertices are used, however many are detected (all of them included)."""
  rng = np.random.default_rng(seed)
  det = rng.random(num_vertices) < frac
  bound = path.sample_bound(kappa, num_vertices)
  assert not bound.capped
  assert bound.k_max == bound.needed == max(1, int(np.ceil(kappa * num_vertices)))
  # every count the device can ask for fits, up to all V detected
  assert _numpy_count(kappa, num_vertices, np.inf) <= bound.k_max
  idx, valid = path.sample_vertices(jax.random.PRNGKey(seed), det, kappa, bound.k_max)
  idx, valid = np.asarray(idx), np.asarray(valid)
  want = _numpy_count(kappa, int(det.sum()), np.inf)
  assert int(valid.sum()) == want
  assert valid[:want].all()                      # the valid entries come first
  chosen = idx[valid]
  assert det[chosen].all() and len(set(chosen.tolist())) == want


def test_sample_bound_derives_or_reports_a_cap():
  # §3.2 with the BFM: κ = 0.1 of 53,215 vertices needs 5,322 slots; ~26% detected -> ~1.4k.
  assert path.sample_bound(0.1, 53215) == (5322, 5322, False)
  assert path.sample_bound(0.1, 53215, 0) == (5322, 5322, False)
  assert path.sample_bound(0.1, 53215, 256) == (256, 5322, True)        # an explicit cap
  assert path.sample_bound(0.1, 53215, 10_000) == (5322, 5322, False)   # larger: not needed
  assert path.sample_bound(0.1, 53215, 5322) == (5322, 5322, False)
  assert path.sample_bound(1e-6, 10) == (1, 1, False)                   # at least one slot
  for bad in [dict(kappa=0.0, num_vertices=10), dict(kappa=1.5, num_vertices=10),
              dict(kappa=0.1, num_vertices=0), dict(kappa=0.1, num_vertices=10, max_sampled=-1)]:
    with pytest.raises(ValueError):
      path.sample_bound(**bad)


def test_a_cap_clips_the_count():
  det = np.ones(2000, bool)
  bound = path.sample_bound(0.1, 2000, max_sampled=64)
  assert bound.capped
  _, valid = path.sample_vertices(jax.random.PRNGKey(0), det, 0.1, bound.k_max)
  assert int(valid.sum()) == 64 == _numpy_count(0.1, 2000, 64)       # not 200


def test_sample_vertices_takes_kappa_of_the_detected():
  det = np.zeros(500, bool)
  det[np.random.default_rng(1).choice(500, 200, replace=False)] = True
  idx, valid = path.sample_vertices(jax.random.PRNGKey(0), det, kappa=0.1, k_max=64)
  assert int(valid.sum()) == 20
  assert det[np.asarray(idx)[np.asarray(valid)]].all()
  assert len(set(np.asarray(idx)[np.asarray(valid)].tolist())) == 20
  idx, valid = path.sample_vertices(jax.random.PRNGKey(0), np.zeros(500, bool), 0.1, 64)
  assert int(valid.sum()) == 0
  idx, valid = path.sample_vertices(jax.random.PRNGKey(0), det, kappa=1.0, k_max=64)
  assert int(valid.sum()) == 64          # capped by the fixed size


def _finite_grads(tree):
  return all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(tree))


def test_gradients_are_finite_where_a_path_point_meets_an_observation():
  """Issue 9's CAPU NaN: at 32-64 px a decoded position sits on the pixel grid and, after Λ_t's
  translation step, a generated point can equal it exactly. ||0|| has no derivative, and the
  NaN reached the weights even from a point outside the κ sample (0 * NaN = NaN)."""
  x = np.random.default_rng(2).normal(0, 0.4, (8, 3)).astype(np.float32)
  x[0] = 0.0                                         # projects to t exactly, in any rounding
  pose = np.array([0.1, -0.2, 0.05, 1.0, 0.0, 0.0], np.float32)
  y_obs = np.asarray(project(x, pose)) + np.float32(0.01)
  y_obs[0] = 0.0                                     # a point the unmoved path meets exactly
  project_fn = lambda t: project(x, jnp.concatenate([jnp.asarray(pose[:4]), t]))
  for valid in (np.ones(8, bool), np.arange(8) > 0):   # sampled, and padding outside the sample
    def total(phi, delta):
      return jnp.sum(path.path_errors(project_fn, phi, delta, y_obs, valid, 2))
    g = jax.grad(total, argnums=(0, 1))(jnp.zeros(2), jnp.zeros(2))   # Δφ = 0: every point on it
    assert _finite_grads(g), g


def test_reprojection_error_is_zero_with_zero_gradient_at_coincident_points():
  y = jnp.asarray(np.random.default_rng(3).normal(size=(5, 2)), jnp.float32)
  e, g = jax.value_and_grad(path.reprojection_error)(y, y, jnp.ones(5, bool))
  assert float(e) == 0.0 and _finite_grads(g) and float(jnp.abs(g).max()) == 0.0
