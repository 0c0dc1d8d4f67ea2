"""Tests for cprfa_jax.metrics: naive NumPy loops, hand-computed cases, properties."""
import math

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

from cprfa_jax import metrics

TOL = dict(rtol=1e-6, atol=1e-6)
FAST = settings(max_examples=30, deadline=None)


# --- naive references ------------------------------------------------------------------------


def ref_nme(pred, gt, visible=None, box=None):
  box = gt if box is None else box
  out = []
  for b in range(pred.shape[0]):
    w = box[b, :, 0].max() - box[b, :, 0].min()
    h = box[b, :, 1].max() - box[b, :, 1].min()
    errs = [math.hypot(*(pred[b, i] - gt[b, i])) for i in range(pred.shape[1])
            if visible is None or visible[b, i]]
    out.append(np.mean(errs) / math.sqrt(w * h) if errs and w * h > 0 else np.nan)
  return np.array(out)


def ref_bin(y):
  a = abs(y)
  return 0 if a <= 30 else (1 if a <= 60 else 2)


def random_case(seed, b=6, n=68):
  rng = np.random.default_rng(seed)
  gt = rng.uniform(0, 200, (b, n, 2))
  pred = gt + rng.normal(0, 5, (b, n, 2))
  visible = rng.random((b, n)) < 0.7
  return pred, gt, visible


# --- nme -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [68, 51, 21, 5])
def test_nme_matches_loop(n):
  pred, gt, visible = random_case(n, n=n)
  np.testing.assert_allclose(metrics.nme(pred, gt), ref_nme(pred, gt), **TOL)
  np.testing.assert_allclose(metrics.nme(pred, gt, visible), ref_nme(pred, gt, visible), **TOL)
  box = np.random.default_rng(1).uniform(0, 200, (6, 68, 2))
  np.testing.assert_allclose(metrics.nme(pred, gt, visible, box_BxKx2=box),
                             ref_nme(pred, gt, visible, box), **TOL)


def test_nme_hand_computed():
  gt = np.array([[[0., 0.], [2., 0.], [2., 2.], [0., 2.]]])  # square of side 2
  assert float(metrics.box_size(gt)[0]) == pytest.approx(2.0)
  # A constant (3, 4) offset is 5 at every point: 5 / 2.
  np.testing.assert_allclose(metrics.nme(gt + [3., 4.], gt), [2.5], **TOL)
  # A 4 x 1 box also has normaliser 2; one point off by 1 of four -> 0.25 / 2.
  gt = np.array([[[0., 0.], [4., 0.], [4., 1.], [0., 1.]]])
  pred = gt.copy()
  pred[0, 1, 0] += 1.0
  np.testing.assert_allclose(metrics.nme(pred, gt), [0.125], **TOL)
  # Mask keeps only the offset point; the box still uses all four.
  np.testing.assert_allclose(metrics.nme(pred, gt, [[0, 1, 0, 0]]), [0.5], **TOL)


def test_nme_masked_points_may_be_nan():
  pred, gt, visible = random_case(3)
  pred_nan = np.where(visible[..., None], pred, np.nan)
  np.testing.assert_allclose(metrics.nme(pred_nan, gt, visible), ref_nme(pred, gt, visible),
                             **TOL)


def test_nme_degenerate_cases_are_nan():
  gt = np.array([[[0., 0.], [1., 0.], [2., 0.]],  # zero height
                 [[0., 0.], [1., 1.], [2., 3.]],  # fine box, but nothing visible
                 [[0., 0.], [1., 1.], [2., 3.]]])
  out = np.asarray(metrics.nme(gt + 1.0, gt, [[1, 1, 1], [0, 0, 0], [1, 1, 1]]))
  assert np.isnan(out[0]) and np.isnan(out[1]) and np.isfinite(out[2])


@pytest.mark.parametrize("pred_shape, gt_shape, match", [
    ((2, 68, 2), (2, 67, 2), r"\(2, 68, 2\) and \(2, 67, 2\)"),
    ((2, 68, 3), (2, 68, 3), "x, y columns"),
    ((2, 2, 68), (2, 2, 68), "transposed"),
    ((68,), (68,), r"\(68,\)"),
])
def test_nme_shape_errors(pred_shape, gt_shape, match):
  with pytest.raises(ValueError, match=match):
    metrics.nme(np.zeros(pred_shape), np.zeros(gt_shape))


def test_nme_mask_and_box_shape_errors():
  pred, gt, _ = random_case(0)
  with pytest.raises(ValueError, match=r"visible_BxL must have shape \(6, 68\)"):
    metrics.nme(pred, gt, np.ones((6, 67)))
  with pytest.raises(ValueError, match="box_BxKx2"):
    metrics.nme(pred, gt, box_BxKx2=np.ones((5, 68, 2)))


def test_nme_jit_and_vmap():
  pred, gt, visible = random_case(7)
  want = ref_nme(pred, gt, visible)
  np.testing.assert_allclose(jax.jit(metrics.nme)(pred, gt, visible), want, **TOL)
  # vmap over single examples (L, 2) and over a stack of batches (K, B, L, 2).
  np.testing.assert_allclose(jax.vmap(metrics.nme)(pred, gt, visible), want, **TOL)
  stack = lambda x: jnp.stack([x, x])
  got = jax.jit(jax.vmap(metrics.nme))(stack(pred), stack(gt), stack(visible))
  np.testing.assert_allclose(got, np.stack([want, want]), **TOL)


@FAST
@given(seed=st.integers(0, 2**31), tx=st.floats(-100, 100), ty=st.floats(-100, 100))
def test_nme_translation_invariant(seed, tx, ty):
  pred, gt, visible = random_case(seed, b=2)
  t = np.array([tx, ty])
  np.testing.assert_allclose(metrics.nme(pred + t, gt + t, visible), metrics.nme(pred, gt, visible),
                             rtol=1e-4)


@FAST
@given(seed=st.integers(0, 2**31), k=st.floats(0.1, 10))
def test_nme_scales_inversely_with_gt_size(seed, k):
  _, gt, visible = random_case(seed, b=2)
  offset_BxLx2 = np.random.default_rng(seed).normal(0, 3, gt.shape)
  base = metrics.nme(gt + offset_BxLx2, gt, visible)
  scaled = metrics.nme(k * gt + offset_BxLx2, k * gt, visible)
  np.testing.assert_allclose(scaled, np.asarray(base) / k, rtol=1e-4)


# --- vertex NME and detection ------------------------------------------------------------


def test_vertex_nme_matches_loop_and_uses_landmark_box():
  rng = np.random.default_rng(4)
  lm = rng.uniform(0, 100, (5, 68, 2))
  gt = rng.uniform(20, 80, (5, 512, 2))
  pred = gt + rng.normal(0, 2, gt.shape)
  det = rng.random((5, 512)) < 0.4
  det[3] = False
  got = np.asarray(metrics.vertex_nme(pred, gt, det, lm))
  want = ref_nme(pred, gt, det, lm)
  assert np.isnan(got[3]) and np.isnan(want[3])
  np.testing.assert_allclose(got, want, **TOL)
  filled = np.asarray(metrics.vertex_nme(pred, gt, det, lm, empty_value=1.0))
  assert filled[3] == 1.0
  np.testing.assert_allclose(np.delete(filled, 3), np.delete(want, 3), **TOL)


def test_detection_rates():
  rng = np.random.default_rng(5)
  det = rng.random((7, 512)) < 0.3
  want = np.array([sum(bool(v) for v in row) / len(row) for row in det])
  np.testing.assert_allclose(metrics.detection_rate(det), want, **TOL)
  one = np.zeros((1, 512), bool)
  one[0, :50] = True  # §3.3's example
  np.testing.assert_allclose(metrics.detection_rate(one), [50 / 512], **TOL)
  with pytest.raises(ValueError, match="C >= 1"):
    metrics.detection_rate(np.zeros((3, 0)))


# --- yaw bins and the binned summary -------------------------------------------------------


def test_yaw_bin_edges():
  yaw = [0, 29.999, 30, 30.001, -30, 59.9, 60, 60.001, -60, -61, 90, 95, -120]
  want = [0, 0, 0, 1, 0, 1, 1, 2, 1, 2, 2, 2, 2]
  np.testing.assert_array_equal(metrics.yaw_bins(yaw), want)
  y = np.random.default_rng(0).uniform(-100, 100, 200)
  np.testing.assert_array_equal(metrics.yaw_bins(y), [ref_bin(v) for v in y])
  with pytest.raises(ValueError, match="non-finite"):
    metrics.yaw_bins([10.0, np.nan])


def test_binned_summary_matches_loop():
  rng = np.random.default_rng(6)
  e, y = rng.uniform(0, 0.1, 300), rng.uniform(-90, 90, 300)
  s = metrics.binned_summary(e, y)
  groups = [[v for v, yy in zip(e, y) if ref_bin(yy) == k] for k in range(3)]
  means = [sum(g) / len(g) for g in groups]
  mu = sum(means) / 3
  np.testing.assert_allclose(s["bin_mean"], means, **TOL)
  np.testing.assert_array_equal(s["bin_count"], [len(g) for g in groups])
  assert s["mean"] == pytest.approx(mu, abs=1e-12)
  assert s["std"] == pytest.approx(math.sqrt(sum((m - mu)**2 for m in means) / 3), abs=1e-12)
  assert s["overall_mean"] == pytest.approx(e.mean(), abs=1e-12)
  assert s["num_images"] == 300 and s["num_omitted"] == 0


def test_binned_summary_std_convention_against_the_paper():
  # One image per bin at the published bin means. Population std (the default, 3DDFA's
  # np.std) reproduces CPRFA's AFLW row of Table 2 and Table 1; ddof=1 the copied 3DDFA rows.
  y = [10.0, 45.0, 75.0]
  assert round(metrics.binned_summary([3.71, 4.20, 5.52], y)["std"], 2) == 0.76
  assert round(metrics.binned_summary([2.17, 2.61, 3.50], y)["std"], 2) == 0.55
  assert round(metrics.binned_summary([3.78, 4.54, 7.93], y, ddof=1)["std"], 2) == 2.21
  assert round(metrics.binned_summary([3.12, 3.62, 5.40], y)["mean"], 2) == 4.05


def test_binned_summary_empty_bin_and_nan_policy():
  s = metrics.binned_summary([0.01, 0.03, 0.05], [5.0, -20.0, 70.0])
  np.testing.assert_array_equal(s["bin_count"], [2, 0, 1])
  assert np.isnan(s["bin_mean"][1]) and np.isnan(s["mean"]) and np.isnan(s["std"])
  assert s["bin_mean"][0] == pytest.approx(0.02) and s["overall_mean"] == pytest.approx(0.03)
  e, y = [0.02, np.nan, 0.04, 0.06], [0.0, 40.0, 40.0, 80.0]
  with pytest.raises(ValueError, match="1 of 4 values are NaN"):
    metrics.binned_summary(e, y)
  s = metrics.binned_summary(e, y, nan_policy="omit")
  np.testing.assert_allclose(s["bin_mean"], [0.02, 0.04, 0.06])
  np.testing.assert_array_equal(s["bin_count"], [1, 1, 1])
  assert s["num_omitted"] == 1 and s["num_images"] == 3


def test_binned_summary_argument_errors():
  with pytest.raises(ValueError, match=r"\(3,\) and \(2,\)"):
    metrics.binned_summary([0.1, 0.2, 0.3], [0.0, 1.0])
  with pytest.raises(ValueError, match="non-empty"):
    metrics.binned_summary([], [])
  with pytest.raises(ValueError, match="ddof"):
    metrics.binned_summary([0.1], [0.0], ddof=2)


# --- CED, AUC, failure rate ----------------------------------------------------------------


def test_ced_matches_loop_and_nan_is_failure():
  e = np.random.default_rng(8).uniform(0, 0.15, 50)
  e[[3, 9]] = np.nan
  t, f = metrics.ced_curve(e, max_error=0.1, num=21)
  np.testing.assert_allclose(t, [0.1 * i / 20 for i in range(21)], **TOL)
  want = [sum(1 for v in e if v <= ti) / len(e) for ti in t]
  np.testing.assert_allclose(f, want, **TOL)


@FAST
@given(errs=st.lists(st.floats(0, 0.3), min_size=1, max_size=40), m=st.floats(0.01, 0.2))
def test_ced_monotone_and_endpoint(errs, m):
  e = np.array(errs)
  t, f = metrics.ced_curve(e, max_error=m, num=31)
  assert t[-1] == m and np.all(np.diff(f) >= 0)
  assert f[-1] == np.mean(e <= m) and f[0] == np.mean(e == 0)
  a = metrics.auc(e, m)
  assert 0.0 <= a <= 1.0


def test_auc_hand_and_trapezoid():
  assert metrics.auc([0.0, 0.0]) == 1.0
  assert metrics.auc([0.1, 0.5, np.nan]) == 0.0
  assert metrics.auc([0.05]) == pytest.approx(0.5)
  assert metrics.auc([0.0, 0.05, 0.2, np.nan]) == pytest.approx((1 + 0.5) / 4)
  e = np.random.default_rng(9).uniform(0, 0.12, 100)
  t, f = metrics.ced_curve(e, 0.1, num=2001)
  trap = np.sum((f[1:] + f[:-1]) / 2 * np.diff(t)) / 0.1
  assert abs(metrics.auc(e, 0.1) - trap) <= 1 / 2000
  with pytest.raises(ValueError, match="negative"):
    metrics.auc([0.1, -0.01])
  with pytest.raises(ValueError, match="max_error"):
    metrics.ced_curve([0.1], max_error=0.0)


def test_failure_rate():
  e = np.array([0.05, 0.10, 0.1001, np.nan, 0.02])
  assert metrics.failure_rate(e) == pytest.approx(2 / 5)  # 0.10 itself is not > 10%
  r = np.array([0.5, 50 / 512, 0.9, 0.5, 0.10])  # 50/512 = 0.098 < 10% fails; 0.10 does not
  assert metrics.failure_rate(e, r) == pytest.approx(3 / 5)
  rng = np.random.default_rng(10)
  e, r = rng.uniform(0, 0.2, 100), rng.uniform(0, 0.5, 100)
  want = sum(1 for a, b in zip(e, r) if a > 0.1 or b < 0.1) / 100
  assert metrics.failure_rate(e, r) == pytest.approx(want)
  with pytest.raises(ValueError, match=r"\(100,\) and \(99,\)"):
    metrics.failure_rate(e, r[:99])


# --- benchmark protocols: AFLW 21 points, COFW-68 -------------------------------------------

AFLW_GROUPS_1BASED = [[18], [20], [22], [23], [25], [27], [37], [37, 38, 39, 40, 41, 42], [40],
                      [43], [43, 44, 45, 46, 47, 48], [46], [3], [32], [31], [36], [15], [49],
                      [61, 62, 63, 64, 65, 66, 67, 68], [55], [9]]


def ref_aflw21_nme(pred68, gt21, valid, box68):
  """3DDFA's benchmark_aflw.calc_nme as a loop (points as (L, 2) here)."""
  out = []
  for b in range(len(pred68)):
    est = np.array([pred68[b, [j - 1 for j in g]].mean(0) for g in AFLW_GROUPS_1BASED])
    w = box68[b, :, 0].max() - box68[b, :, 0].min()
    h = box68[b, :, 1].max() - box68[b, :, 1].min()
    errs = [math.hypot(*(est[i] - gt21[b, i])) for i in range(21) if valid[b, i]]
    out.append(np.mean(errs) / math.sqrt(w * h))
  return np.array(out)


def test_aflw21_from_68_averages_the_groups():
  pred = np.random.default_rng(0).uniform(0, 100, (3, 68, 2))
  got = np.asarray(metrics.aflw21_from_68(pred))
  for i, g in enumerate(AFLW_GROUPS_1BASED):
    np.testing.assert_allclose(got[:, i], pred[:, [j - 1 for j in g]].mean(1), **TOL)
  np.testing.assert_allclose(metrics.aflw21_matrix().sum(1), 1.0, **TOL)


def test_aflw21_nme_matches_3ddfas_loop():
  rng = np.random.default_rng(1)
  pred, box = rng.uniform(0, 120, (5, 68, 2)), rng.uniform(0, 120, (5, 68, 2))
  gt21 = rng.uniform(0, 120, (5, 21, 2))
  valid = rng.random((5, 21)) < 0.7
  gt21_nan = np.where(valid[..., None], gt21, np.nan)     # not annotated: any value
  np.testing.assert_allclose(metrics.aflw21_nme(pred, gt21_nan, valid, box),
                             ref_aflw21_nme(pred, gt21, valid, box), rtol=1e-5)


def test_aflw21_nme_hand_computed():
  # A prediction whose 21 points are the ground truth moved by (3, 4): error 5 at every
  # annotated point; the 68-point box is 40 x 10, sqrt(w h) = 20: NME 5 / 20 = 0.25.
  pred = np.zeros((1, 68, 2))
  gt21 = np.asarray(metrics.aflw21_from_68(pred)) - [3.0, 4.0]
  box = np.zeros((1, 68, 2))
  box[0, 1] = [40.0, 10.0]
  valid = np.zeros((1, 21), bool)
  valid[0, [0, 7, 20]] = True
  assert float(metrics.aflw21_nme(pred, gt21, valid, box)[0]) == pytest.approx(0.25)


def test_cofw68_nme_box_and_interocular():
  rng = np.random.default_rng(2)
  gt, pred = rng.uniform(0, 100, (4, 68, 2)), rng.uniform(0, 100, (4, 68, 2))
  occ = rng.random((4, 68)) < 0.4
  inner = np.zeros((4, 68), bool)
  inner[:, 17:] = True
  np.testing.assert_allclose(metrics.cofw68_nme(pred, gt, occ), ref_nme(pred, gt, inner), **TOL)
  io = [math.dist(gt[b, 36:42].mean(0), gt[b, 42:48].mean(0)) for b in range(4)]
  err = [np.mean([math.dist(pred[b, i], gt[b, i]) for i in range(17, 68)]) for b in range(4)]
  np.testing.assert_allclose(metrics.cofw68_nme(pred, gt, occ, "interocular"),
                             np.array(err) / io, rtol=1e-5)
  vis_err = [np.mean([math.dist(pred[b, i], gt[b, i]) for i in range(17, 68) if not occ[b, i]])
             for b in range(4)]
  np.testing.assert_allclose(metrics.cofw68_nme(pred, gt, occ, "interocular", False),
                             np.array(vis_err) / io, rtol=1e-5)
  with pytest.raises(ValueError, match="normaliser must be"):
    metrics.cofw68_nme(pred, gt, occ, "eyes")


def test_interocular_hand_computed():
  pts = np.zeros((68, 2))
  pts[36:42] = [10.0, 20.0]
  pts[42:48] = [40.0, 60.0]
  assert float(metrics.interocular_distance(pts)) == pytest.approx(50.0)
  # Only the jaw (not scored) is wrong: COFW's 51-point NME is 0.
  pred = pts.copy()
  pred[:17] += 100.0
  assert float(metrics.cofw68_nme(pred[None], pts[None], normaliser="interocular")[0]) == 0.0


def test_failure_flag_catches_a_bad_fit_a_blind_one_and_nan():
  from cprfa_jax.metrics import MIN_DETECTED, failure_flag
  conf = np.array([0.05, 0.2, np.nan, 0.05, 0.1])
  det = np.array([0.5, 0.5, 0.5, MIN_DETECTED / 2, MIN_DETECTED])
  np.testing.assert_array_equal(failure_flag(conf, det, 0.1), [False, True, True, True, False])
  np.testing.assert_array_equal(np.asarray(failure_flag(jnp.asarray(conf), jnp.asarray(det), 0.1)),
                                [False, True, True, True, False])
