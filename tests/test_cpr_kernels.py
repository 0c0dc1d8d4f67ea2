"""CPR kernels (§2.2) against naive NumPy loops, and their invariances (hypothesis)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cprfa_jax import cpr
from cprfa_jax.geometry import project

EPS = 1e-6


# ---------------------------------------------------------------- naive NumPy references

def ref_t(yo, yg, det):
  n = len(yo)
  out = np.zeros((2, n, n))
  for i in range(n):
    for j in range(n):
      if det[i] and det[j]:
        out[:, i, j] = yo[i] - yg[j]
  return out


def ref_s(y, det):
  n = len(y)
  out = np.zeros((n, n))
  for i in range(n):
    for j in range(n):
      if det[i] and det[j]:
        out[i, j] = np.sqrt(((y[i] - y[j]) ** 2).sum())
  return out


def ref_rz(y, det):
  n = len(y)
  out = np.zeros((n, n))
  for i in range(n):
    for j in range(n):
      e = y[j] - y[i]
      norm = np.sqrt((e ** 2).sum())
      if det[i] and det[j] and norm > EPS:
        out[i, j] = e[1] / norm
  return out


def _unit(v):
  norm = np.sqrt((v ** 2).sum())
  return v / norm if norm > EPS else np.zeros_like(v)


def ref_rxy(y, det):
  n = len(y)
  out = np.zeros((n, n))
  for i in range(n):
    for j in range(n):
      k = (j + 1) % n
      if det[i] and det[j] and det[k]:
        out[i, j] = _unit(y[i] - y[j]) @ _unit(y[j] - y[k])
  return out


def ref_ratio(sg, so, det):
  n = len(det)
  out = np.zeros((n, n))
  for i in range(n):
    for j in range(n):
      if det[i] and det[j]:
        out[i, j] = sg[i, j] / so[i, j] if so[i, j] > EPS else 1.0
  return out


def random_points(seed, n=24, p_detect=0.7):
  rng = np.random.default_rng(seed)
  yo = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
  yg = (yo + rng.normal(0, 0.1, (n, 2))).astype(np.float32)
  det = rng.random(n) < p_detect
  return yo, yg, det


@pytest.mark.parametrize("seed", range(5))
def test_kernels_match_naive_loops(seed):
  yo, yg, det = random_points(seed)
  np.testing.assert_allclose(cpr.kernel_t(yo, yg, det), ref_t(yo, yg, det), atol=1e-5)
  np.testing.assert_allclose(cpr.kernel_s(yo, det), ref_s(yo, det), atol=1e-5)
  np.testing.assert_allclose(cpr.kernel_rz(yo, det), ref_rz(yo, det), atol=1e-5)
  np.testing.assert_allclose(cpr.kernel_rxy(yo, det), ref_rxy(yo, det), atol=1e-5)
  sg, so = ref_s(yg, det), ref_s(yo, det)
  np.testing.assert_allclose(cpr.scale_ratio(sg, so, cpr.pair_mask(det)), ref_ratio(sg, so, det),
                             rtol=1e-5, atol=1e-5)


def test_cpr_inputs_channels_match_loops():
  c = 16
  yo, yg, det = random_points(7, n=c)
  layout = cpr.cpr_layout(c, seed=3)
  out = cpr.cpr_inputs(yo, yg, det, layout)
  assert out.rxy.shape == out.rz.shape == out.s.shape == (3, c // 2, c // 2)
  assert out.t.shape == (3, 2, c // 2, c // 2)
  for ch in range(3):
    o, g, d = yo[layout[ch]], yg[layout[ch]], det[layout[ch]]
    np.testing.assert_allclose(out.rxy[ch], ref_rxy(g, d) - ref_rxy(o, d), atol=1e-5)
    np.testing.assert_allclose(out.rz[ch], ref_rz(g, d) - ref_rz(o, d), atol=1e-5)
    np.testing.assert_allclose(out.s[ch], ref_ratio(ref_s(g, d), ref_s(o, d), d), rtol=1e-4)
    np.testing.assert_allclose(out.t[ch], ref_t(o, g, d), atol=1e-5)


def test_batched_equals_per_example_and_compiles_once():
  c, b = 16, 4
  layout = cpr.cpr_layout(c)
  data = [random_points(s, n=c) for s in range(b)]
  yo, yg, det = (np.stack(x) for x in zip(*data))
  fn = jax.jit(jax.vmap(cpr.cpr_inputs, in_axes=(0, 0, 0, None)))
  batched = fn(yo, yg, det, layout)
  for i in range(b):
    single = cpr.cpr_inputs(yo[i], yg[i], det[i], layout)
    for a, s in zip(batched, single):
      np.testing.assert_allclose(a[i], s, atol=1e-6)
  fn(yo + 1, yg, ~det, layout)  # new values, same shapes: no retrace
  assert fn._cache_size() == 1


# ---------------------------------------------------------------- invariance properties

def posed_points(seed, pose, n=32):
  """Projected random 3D points: the kernels only see 2D points, as from Eq. 2."""
  x = np.random.default_rng(seed).normal(0, 0.4, (n, 3)).astype(np.float32)
  return np.asarray(project(x, jnp.asarray(pose, jnp.float32)))


angles = st.floats(-1.2, 1.2)
pose_st = st.tuples(angles, angles, st.floats(-3.1, 3.1), st.floats(0.3, 3.0),
                    st.floats(-2, 2), st.floats(-2, 2))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), pose=pose_st, dt=st.tuples(st.floats(-3, 3), st.floats(-3, 3)),
       ds=st.floats(0.2, 5.0), drz=st.floats(-3.1, 3.1))
def test_invariances(seed, pose, dt, ds, drz):
  det = np.random.default_rng(seed + 1).random(32) < 0.8
  base = posed_points(seed, pose)
  p_t = np.array(pose); p_t[4:] += dt
  p_ts = p_t.copy(); p_ts[3] *= ds
  p_tsr = p_ts.copy(); p_tsr[2] += drz
  moved_t, moved_ts, moved_tsr = (posed_points(seed, p) for p in (p_t, p_ts, p_tsr))
  # Λ_s is invariant to t (§2.2).
  np.testing.assert_allclose(cpr.kernel_s(moved_t, det), cpr.kernel_s(base, det), atol=2e-4)
  # Λ_rz is invariant to t and s.
  np.testing.assert_allclose(cpr.kernel_rz(moved_ts, det), cpr.kernel_rz(base, det), atol=2e-3)
  # Λ_rxy is invariant to t, s and r_z.
  np.testing.assert_allclose(cpr.kernel_rxy(moved_tsr, det), cpr.kernel_rxy(base, det), atol=2e-3)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), drz=st.floats(0.05, 1.0))
def test_rz_kernel_sees_in_plane_rotation(seed, drz):
  """Λ_rz must not be blind to r_z (the reason for its origin, see kernel_rz)."""
  det = np.ones(32, bool)
  pose = np.array([0.1, 0.2, 0.0, 1.0, 0.0, 0.0])
  rotated = pose.copy(); rotated[2] += drz
  diff = cpr.kernel_rz(posed_points(seed, rotated), det) - cpr.kernel_rz(posed_points(seed, pose), det)
  assert np.abs(diff).mean() > 0.1 * np.sin(drz)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), pose=pose_st, dt=st.tuples(st.floats(-1, 1), st.floats(-1, 1)))
def test_translation_from_cpr_is_translation_error(seed, pose, dt):
  c = 32
  det = np.random.default_rng(seed).random(c) < 0.6
  det[:2] = True
  y_gen = posed_points(seed, pose, n=c)
  true = np.array(pose); true[4:] += dt
  y_obs = posed_points(seed, true, n=c)
  out = cpr.cpr_inputs(y_obs, y_gen, det, cpr.cpr_layout(c, seed=1))
  # Each channel may miss vertices; Λ_t of every channel still averages to Δt.
  np.testing.assert_allclose(cpr.translation_from_cpr(out.t), dt, atol=1e-4)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_missing_vertices_give_exact_zeros(seed):
  c = 24
  yo, yg, det = random_points(seed, n=c, p_detect=0.5)
  layout = cpr.cpr_layout(c)
  out = cpr.cpr_inputs(yo, yg, det, layout)
  for ch in range(3):
    missing = ~det[layout[ch]]
    for kernel in (out.rxy[ch], out.rz[ch], out.s[ch], out.t[ch, 0], out.t[ch, 1]):
      k = np.asarray(kernel)
      assert np.all(k[missing, :] == 0) and np.all(k[:, missing] == 0)


def test_duplicated_points_are_finite_with_finite_gradients():
  rng = np.random.default_rng(0)
  y = rng.normal(size=(8, 2)).astype(np.float32)
  y[3] = y[2]; y[5] = y[2]; y[7] = y[6]          # coincident points
  yo = y.copy(); yo[1] = yo[0]                   # and in the observation
  det = np.ones(8, bool)
  layout = cpr.cpr_layout(8)
  out = cpr.cpr_inputs(yo, y, det, layout)
  for a in out:
    assert np.all(np.isfinite(a))

  def loss(y_gen):
    o = cpr.cpr_inputs(yo, y_gen, det, layout)
    return sum(jnp.sum(a ** 2) for a in o)

  g = jax.grad(loss)(jnp.asarray(y))
  assert np.all(np.isfinite(g))
  all_same = np.zeros((8, 2), np.float32)
  for a in cpr.cpr_inputs(all_same, all_same, det, layout):
    assert np.all(np.isfinite(a))
