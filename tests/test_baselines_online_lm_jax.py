"""baselines.online_lm_jax against its host reference (`fitting.online_fit`, scipy): the same
fits on faces with outliers, padding that changes nothing, and degenerate faces that neither
fail the batch nor leak NaN into it."""

import numpy as np
import pytest

from cprfa_jax import metrics, mm
from cprfa_jax.baselines import fitting, online_lm_jax
from cprfa_jax.geometry import projection


@pytest.fixture(scope="module")
def model():
  return mm.load_model("synthetic:2000")


def _faces(model, n, seed, outliers=0.1):
  """n faces' projected vertices from random pose and shape, a share of them moved far away
  (what a wrongly decoded DAFI code does), about 60% of vertices detected."""
  rng = np.random.default_rng(seed)
  ys, dets, gts = [], [], []
  for _ in range(n):
    alpha = np.zeros(model.num_id + model.num_exp)
    alpha[:10] = rng.normal(0, 1, 10)
    alpha[model.num_id:model.num_id + 5] = rng.normal(0, 1, 5)
    pose = np.asarray(projection.pose_from_degrees(*rng.uniform(-40, 40, 3),
                                                   s=rng.uniform(0.6, 1.0),
                                                   tx=rng.uniform(-0.1, 0.1),
                                                   ty=rng.uniform(-0.1, 0.1)))
    verts = np.asarray(mm.model.vertices(model, alpha))
    y = np.asarray(projection.project(verts, pose), np.float64)
    y += rng.normal(0, 0.003, y.shape)
    far = rng.random(len(y)) < outliers
    y[far] += rng.normal(0, 0.2, (far.sum(), 2))
    dets.append(rng.random(len(y)) < 0.6)
    ys.append(y)
    gts.append(fitting.landmarks_of(model, pose, alpha))
  return np.stack(ys), np.stack(dets), np.stack(gts)


def _landmark_nme(model, pose, alpha, gt_68x2):
  lm = fitting.landmarks_of(model, pose, alpha)
  return float(metrics.nme(lm[None], gt_68x2[None])[0])


def test_batched_jax_fit_equals_the_scipy_fit_with_outliers(model):
  y, det, gt = _faces(model, 4, seed=0)
  poses, alphas = online_lm_jax.online_fit_batch(model, y, det, max_points=300)
  for i in range(4):
    hp, ha = fitting.online_fit(model, y[i], det[i], max_points=300)
    jax_nme = _landmark_nme(model, poses[i], alphas[i], gt[i])
    host_nme = _landmark_nme(model, hp, ha, gt[i])
    # Both converge to the same minimum: their landmarks agree far below the fit's own error
    # (float32 autodiff against float64 finite differences).
    lm_j = fitting.landmarks_of(model, poses[i], alphas[i])
    lm_h = fitting.landmarks_of(model, hp, ha)
    assert np.abs(lm_j - lm_h).max() < 2e-4
    assert abs(jax_nme - host_nme) < 1e-4 and jax_nme < 0.02


def test_padding_changes_nothing(model):
  y, det, _ = _faces(model, 2, seed=1)
  det[:] = False
  det[:, ::20] = True                               # 100 detected vertices per face
  a = online_lm_jax.online_fit_batch(model, y, det, max_points=100)
  b = online_lm_jax.online_fit_batch(model, y, det, max_points=400)
  for pa, aa, pb, ab in zip(*a, *b):
    # Zero-weight pads add nothing to the normal equations; what differs is float32 summation
    # (relative ~1e-7 per sum of 100-400 terms), which the solve amplifies by the normal
    # matrix's conditioning: ~1e3-1e4 for the shape coefficients from 100 points, so a few
    # 1e-4..1e-3 on coefficients of unit variance (7.4e-4 measured with jax 0.10.2, within
    # 5e-4 with the versions before). The pose is well conditioned. What the fit is for, its
    # landmarks, must agree to float32 rounding of pixel-scale coordinates.
    np.testing.assert_allclose(pa, pb, atol=5e-5)
    np.testing.assert_allclose(aa, ab, atol=2e-3)
    np.testing.assert_allclose(fitting.landmarks_of(model, pa, aa),
                               fitting.landmarks_of(model, pb, ab), atol=2e-4)


def test_degenerate_faces_are_none_and_leave_the_others_alone(model):
  y, det, _ = _faces(model, 3, seed=2)
  det[1] = False
  det[1, :5] = True                                 # fewer than 6 detected
  y[2] = 0.25                                       # every point at one position: no scale
  poses, alphas = online_lm_jax.online_fit_batch(model, y, det, max_points=300)
  assert poses[1] is None and alphas[1] is None and poses[2] is None
  solo_p, solo_a = online_lm_jax.online_fit_batch(model, y[:1], det[:1], max_points=300)
  assert np.isfinite(poses[0]).all()
  np.testing.assert_allclose(poses[0], solo_p[0], atol=5e-5)
  np.testing.assert_allclose(alphas[0], solo_a[0], atol=5e-4)


def test_no_padding_size_is_refused(model):
  y, det, _ = _faces(model, 1, seed=3)
  with pytest.raises(ValueError, match="max_points=0"):
    online_lm_jax.online_fit_batch(model, y, det, max_points=0)


def test_evaluation_baselines_give_the_same_online_lm_either_way(model):
  from cprfa_jax.evaluate import methods  # pylint: disable=import-outside-toplevel
  y, det, gt = _faces(model, 4, seed=4)
  det[3] = False                                     # a face the fit must skip, in a padded batch
  obs = {"y_all": y.astype(np.float32), "det_all": det, "y_lm": gt.astype(np.float32)}
  sel = np.arange(0, model.num_vertices, 40)
  host = methods.baselines(model, obs, sel, online_lm="host")["Online LM"]
  dev = methods.baselines(model, obs, sel, online_lm="jax", batch_size=3)["Online LM"]
  np.testing.assert_array_equal(host[2], [True, True, True, False])
  np.testing.assert_array_equal(dev[2], host[2])
  np.testing.assert_allclose(dev[1], host[1], atol=2e-3)      # pose, as fitted
  for i in range(3):
    np.testing.assert_allclose(fitting.landmarks_of(model, dev[1][i], dev[0][i]),
                               fitting.landmarks_of(model, host[1][i], host[0][i]), atol=2e-4)
  with pytest.raises(ValueError, match="online_lm='gpu'"):
    methods.baselines(model, obs, sel, online_lm="gpu")
