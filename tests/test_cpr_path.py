"""Path-error sampling of consistency-aware updating (§2.4, Eq. 6) against a NumPy loop."""

import jax
import jax.numpy as jnp
import numpy as np
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
