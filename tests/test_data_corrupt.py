"""data.corrupt: level 0 is the identity, and each level removes or perturbs exactly the
documented amount. The DAFI here is an ellipse whose code is its pixel's position (unique per
pixel), so where a code came from can be read back."""

import hypothesis
import numpy as np
import pytest
from hypothesis import strategies as st

from cprfa_jax.data import corrupt

H, W = 48, 40


def _dafi():
  yy, xx = np.mgrid[:H, :W].astype(np.float32)
  mask = ((xx - 19) / 14) ** 2 + ((yy - 25) / 19) ** 2 <= 1.0
  dafi = np.stack([(xx + 0.5) / W, (yy + 0.5) / H, np.full_like(xx, 0.5)], -1)
  return np.where(mask[..., None], dafi, 0.0).astype(np.float32), mask


SPACING = 0.02
seeds = st.integers(0, 2**31 - 1)


@pytest.mark.parametrize("kind", list(corrupt.CORRUPTIONS))
def test_level_zero_is_the_identity(kind):
  dafi, mask = _dafi()
  d, m = corrupt.corrupt(kind, dafi, mask, 0.0, np.random.default_rng(0), SPACING)
  np.testing.assert_array_equal(d, dafi)
  np.testing.assert_array_equal(m, mask)


@pytest.mark.parametrize("kind", ["holes", "occluders"])
@hypothesis.given(level=st.floats(0.01, 0.95), seed=seeds)
@hypothesis.settings(max_examples=15, deadline=None)
def test_removal_takes_exactly_the_level_and_leaves_codes(kind, level, seed):
  dafi, mask = _dafi()
  d, m = corrupt.corrupt(kind, dafi, mask, level, np.random.default_rng(seed), SPACING)
  assert not (m & ~mask).any()                              # nothing added
  assert mask.sum() - m.sum() == round(level * mask.sum())  # exactly the fraction removed
  np.testing.assert_array_equal(d[m], dafi[m])              # kept pixels keep their codes


def test_holes_are_blobs_not_salt():
  # Removed pixels cluster: most removed pixels have a removed 4-neighbour.
  dafi, mask = _dafi()
  _, m = corrupt.holes(dafi, mask, 0.3, np.random.default_rng(1))
  gone = mask & ~m
  nb = np.zeros_like(gone)
  nb[1:] |= gone[:-1]
  nb[:-1] |= gone[1:]
  nb[:, 1:] |= gone[:, :-1]
  nb[:, :-1] |= gone[:, 1:]
  assert (gone & nb).sum() > 0.9 * gone.sum()


@hypothesis.given(level=st.floats(0.1, 4.0), seed=seeds)
@hypothesis.settings(max_examples=10, deadline=None)
def test_noise_has_the_documented_sigma(level, seed):
  dafi, mask = _dafi()
  d, m = corrupt.noise(dafi, mask, level, np.random.default_rng(seed), SPACING)
  np.testing.assert_array_equal(m, mask)
  np.testing.assert_array_equal(d[~mask], dafi[~mask])      # the background is untouched
  # The third channel sits at 0.5, far from the clip at 0 and 1 for these σ (<= 0.08): its
  # perturbation is the unclipped noise; n ~ 1,300 samples, so the std is within ~10%.
  delta = d[mask][:, 2] - 0.5
  sigma = level * SPACING
  assert abs(delta.std() / sigma - 1.0) < 0.15
  assert abs(delta.mean()) < 4 * sigma / np.sqrt(delta.size)


@hypothesis.given(level=st.floats(1.0, 6.0), seed=seeds)
@hypothesis.settings(max_examples=10, deadline=None)
def test_warp_moves_codes_by_at_most_the_level(level, seed):
  dafi, mask = _dafi()
  d, m = corrupt.warp(dafi, mask, level, np.random.default_rng(seed))
  ys, xs = np.nonzero(m)
  # Each code is the position of the pixel it came from; nearest rounding adds <= 0.5 per axis.
  src_x = d[ys, xs, 0] * W - 0.5
  src_y = d[ys, xs, 1] * H - 0.5
  shift = np.hypot(src_x - xs, src_y - ys)
  assert shift.max() <= level + np.sqrt(0.5) + 1e-4
  if level >= 2:   # the field is smooth over the face: a wide region moves by >= 1 px
    assert (shift >= 0.99).sum() > 10
  assert np.all(mask[np.round(src_y).astype(int), np.round(src_x).astype(int)])  # face codes


@hypothesis.given(level=st.floats(0.5, 8.0))
@hypothesis.settings(max_examples=10, deadline=None)
def test_leak_grows_the_mask_by_the_level_with_border_codes(level):
  dafi, mask = _dafi()
  d, m = corrupt.leak(dafi, mask, level, np.random.default_rng(0))
  yy, xx = np.mgrid[:H, :W]
  fy, fx = np.nonzero(mask)
  # Naive: distance from every pixel to the nearest face pixel.
  dist = np.sqrt(((yy[..., None] - fy) ** 2 + (xx[..., None] - fx) ** 2).min(-1))
  np.testing.assert_array_equal(m, dist <= level)
  np.testing.assert_array_equal(d[mask], dafi[mask])
  new_y, new_x = np.nonzero(m & ~mask)
  src_x, src_y = d[new_y, new_x, 0] * W - 0.5, d[new_y, new_x, 1] * H - 0.5
  # A new pixel shows the code of a nearest face pixel (ties: any of them).
  got = np.hypot(src_x - new_x, src_y - new_y)
  np.testing.assert_allclose(got, dist[new_y, new_x], atol=1e-4)


def test_pncc_spacing_matches_brute_force():
  pncc = np.random.default_rng(0).random((300, 3))
  d = np.linalg.norm(pncc[:, None] - pncc[None], axis=-1)
  np.fill_diagonal(d, np.inf)
  assert corrupt.pncc_spacing(pncc) == pytest.approx(np.median(d.min(1)), rel=1e-12)


def test_random_corruption_is_a_function_of_the_generator():
  dafi, mask = _dafi()
  a = corrupt.random_corruption(dafi, mask, np.random.default_rng(5), SPACING)
  b = corrupt.random_corruption(dafi, mask, np.random.default_rng(5), SPACING)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])


def test_unknown_corruption_is_named():
  with pytest.raises(ValueError, match="blur.*holes"):
    corrupt.corrupt("blur", *_dafi(), 0.1, np.random.default_rng(0), SPACING)


def test_training_draws_surround_every_evaluated_level():
  # The study's regressors train on draw_corruption; each (kind, level) the study evaluates
  # must have training draws of that kind within 5% of the kind's range around it.
  rng = np.random.default_rng(0)
  draws = [corrupt.draw_corruption(rng) for _ in range(3000)]
  for kind, levels in corrupt.LEVELS.items():
    got = np.array([lv for k, lv in draws if k == kind])
    for level in levels:
      assert np.any(np.abs(got - level) < 0.05 * levels[-1]), (kind, level)


@pytest.mark.parametrize("study", [True, False])
def test_corrupted_gt_corrupts_each_example_by_its_own_generator(study):
  # What the regressors train on (cpr.dafi_source=corrupted_gt): an example's corruption
  # depends on its generator only, not on its batch or its place in it (the observer keys one
  # generator per example by its global row), and every example is corrupted.
  spacing = SPACING if study else None
  dafi, mask = _dafi()
  d_b, m_b = np.stack([dafi, dafi[::-1]]), np.stack([mask, mask[::-1]])
  gen = lambda i: np.random.default_rng([1, i])
  d, m = corrupt.corrupted_gt(d_b, m_b, [gen(0), gen(1)], spacing)
  assert d.shape == d_b.shape and m.shape == m_b.shape
  d1, m1 = corrupt.corrupted_gt(d_b[1:], m_b[1:], [gen(1)], spacing)       # alone, same generator
  np.testing.assert_array_equal(d1[0], d[1])
  np.testing.assert_array_equal(m1[0], m[1])
  d_swap, _ = corrupt.corrupted_gt(d_b, m_b, [gen(0), gen(2)], spacing)    # another generator
  np.testing.assert_array_equal(d_swap[0], d[0])
  assert not np.array_equal(d_swap[1], d[1])
  for i in range(2):
    assert not (np.array_equal(d[i], d_b[i]) and np.array_equal(m[i], m_b[i]))
    assert 0 <= d[i].min() and d[i].max() <= 1


def test_study_and_mild_corruptions_differ():
  dafi, mask = _dafi()
  d_b, m_b = dafi[None], mask[None]
  mild = corrupt.corrupted_gt(d_b, m_b, [np.random.default_rng(3)])
  study = corrupt.corrupted_gt(d_b, m_b, [np.random.default_rng(3)], SPACING)
  assert not np.array_equal(mild[0], study[0])
  assert not np.any(mild[1] & ~m_b)            # mild: holes only, no new face pixels
