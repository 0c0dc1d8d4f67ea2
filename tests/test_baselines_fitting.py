"""The §3.4 baselines recover the exact pose from clean, complete input."""

import functools

import numpy as np
import pytest

from cprfa_jax.baselines import fitting
from cprfa_jax.geometry import project
from cprfa_jax.mm import shape, synthetic_model


@functools.lru_cache(maxsize=1)
def model():
  return synthetic_model(num_vertices=1500, num_id=10, num_exp=5)


POSES = [np.array(p, np.float32) for p in (
    [0.1, 0.3, 0.05, 0.9, 0.02, -0.01], [-0.3, -0.9, 0.2, 1.2, -0.1, 0.05],
    [0.25, 1.2, -0.3, 0.7, 0.0, 0.1])]


def _same_projection(m, pose_a, pose_b, alpha=None):
  alpha = np.zeros(m.num_id + m.num_exp) if alpha is None else alpha
  return np.abs(fitting.landmarks_of(m, pose_a, alpha) - fitting.landmarks_of(m, pose_b, alpha)).max()


@pytest.mark.parametrize("pose", POSES)
def test_affine_and_pnp_recover_the_pose_from_mean_landmarks(pose):
  m = model()
  x = np.asarray(m.mean_Vx3)[np.asarray(m.landmarks_68)]
  y = np.asarray(project(x, pose))
  np.testing.assert_allclose(fitting.affine_pose(x, y), pose, atol=1e-4)
  pnp = fitting.pnp_pose(x, y)
  assert pnp is not None
  np.testing.assert_allclose(pnp, pose, atol=2e-2)          # PnP's camera is nearly affine
  assert _same_projection(m, pnp, pose) < 5e-3               # < 0.5% of the face width
  assert fitting.pnp_pose(x[:3], y[:3]) is None


@pytest.mark.parametrize("pose", POSES)
def test_online_fit_recovers_pose_exactly_and_fits_shape(pose):
  m = model()
  det = np.ones(m.num_vertices, bool)
  # Mean shape, shape fixed: the exact pose.
  y0 = np.asarray(project(m.mean_Vx3, pose))
  fit0, _ = fitting.online_fit(m, y0, det, num_id=0, num_exp=0)
  np.testing.assert_allclose(fit0, pose, atol=1e-5)
  # Random shape, shape free: pose and coefficients both exactly.
  rng = np.random.default_rng(0)
  alpha = np.zeros(m.num_id + m.num_exp, np.float32)
  alpha[:10] = rng.normal(0, 1, 10)
  alpha[m.num_id:] = rng.normal(0, 1, 5)
  y = np.asarray(project(shape(m, alpha[:m.num_id], alpha[m.num_id:]), pose))
  fit_pose, fit_alpha = fitting.online_fit(m, y, det, num_id=10, num_exp=5, prior=1e-6)
  np.testing.assert_allclose(fit_pose, pose, atol=1e-5)
  np.testing.assert_allclose(fit_alpha, alpha, atol=1e-4)
  assert fitting.online_fit(m, y, np.zeros(m.num_vertices, bool)) == (None, None)


def test_online_fit_is_robust_to_outliers():
  m = model()
  pose = POSES[0]
  y = np.asarray(project(m.mean_Vx3, pose))
  rng = np.random.default_rng(1)
  bad = rng.random(m.num_vertices) < 0.2                   # 20% mismatched DAFI pixels
  y_bad = y.copy()
  y_bad[bad] += rng.normal(0, 0.3, (bad.sum(), 2))
  fit_pose, _ = fitting.online_fit(m, y_bad, np.ones(m.num_vertices, bool), num_id=5, num_exp=2)
  assert _same_projection(m, fit_pose, pose) < 0.02


def test_float64_rotation_matches_eq2():
  from cprfa_jax.geometry import rotation_matrix
  for angles in [(0.1, -0.4, 2.0), (-1.2, 1.4, -0.3)]:
    np.testing.assert_allclose(fitting._rotation64(*angles), rotation_matrix(*angles), atol=1e-6)


def test_coincident_points_are_a_failed_fit_not_a_crash():
  # A sparse DAFI can decode several vertices to one pixel: the affine camera then has scale 0
  # and its orthonormalisation divides by it (the SVD of NaNs does not converge).
  m = model()
  x = np.asarray(m.mean_Vx3)[np.asarray(m.landmarks_68)]
  y = np.full((68, 2), 0.25)
  assert fitting.affine_pose(x, y) is None
  assert fitting.pnp_pose(x, y) is None
  y_all = np.full((m.num_vertices, 2), 0.25)
  assert fitting.online_fit(m, y_all, np.ones(m.num_vertices, bool)) == (None, None)
  y[0, 0] = np.nan
  assert fitting.pnp_pose(x, y) is None


def test_online_fit_uses_an_even_subsample_of_at_most_max_points():
  m = model()
  pose = POSES[1]
  y = np.asarray(project(m.mean_Vx3, pose)).copy()
  det = np.ones(m.num_vertices, bool)
  kept = np.linspace(0, m.num_vertices - 1, 100).round().astype(int)
  # Every vertex the cap leaves out is moved far away: the capped fit never sees them and is
  # exact, the uncapped one is pulled off (soft-L1 bounds, but does not remove, their pull).
  dropped = np.setdiff1d(np.arange(m.num_vertices), kept)
  y[dropped] += 0.5
  capped, _ = fitting.online_fit(m, y, det, num_id=0, num_exp=0, max_points=100)
  np.testing.assert_allclose(capped, pose, atol=1e-5)
  full, _ = fitting.online_fit(m, y, det, num_id=0, num_exp=0, max_points=0)
  assert _same_projection(m, full, pose) > 0.05
