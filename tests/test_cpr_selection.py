"""Vertex selection and channel layout for CPR (§2.2)."""

import numpy as np
import pytest

from cprfa_jax import cpr


def test_probabilities_match_definition():
  det = np.array([[1, 1, 0, 0], [1, 0, 0, 1], [1, 1, 0, 1], [0, 1, 0, 1]], bool)
  err = np.array([[0.1, 5.0, 0, 0], [0.2, 0, 0, 0.1], [0.3, 0.1, 0, 9.0], [0, 0.1, 0, 9.0]])
  p1, p2 = cpr.selection_probabilities(det, err, tau=1.0)
  np.testing.assert_allclose(p1, [0.75, 0.75, 0.0, 0.75])
  np.testing.assert_allclose(p2, [1.0, 2 / 3, 0.0, 1 / 3])


def test_select_takes_best_of_each_half():
  rng = np.random.default_rng(0)
  v = 200
  x = rng.uniform(-1, 1, v)
  p1, p2 = rng.random(v), rng.random(v)
  left, right = cpr.select_vertices(p1, p2, x, c=40)
  assert len(left) == len(right) == 20
  assert np.all(x[left] > 0) and np.all(x[right] <= 0)
  score = p1 * p2
  assert score[left].min() >= np.sort(score[x > 0])[-20]
  assert score[right].min() >= np.sort(score[x <= 0])[-20]
  with pytest.raises(ValueError, match="multiple of 4"):
    cpr.select_vertices(p1, p2, x, c=42)
  with pytest.raises(ValueError, match="half of the face"):
    cpr.select_vertices(p1, p2, x, c=400)


def test_layout_channels():
  c = 64
  layout = cpr.cpr_layout(c, seed=5)
  n = c // 2
  assert layout.shape == (3, n)
  assert sorted(layout[0]) == list(range(n))           # channel 1: the left half
  assert sorted(layout[1]) == list(range(n, c))        # channel 2: the right half
  ch3 = layout[2]
  assert len(set(ch3)) == n and (ch3 < n).sum() == n // 2   # evenly from both
  assert not np.array_equal(layout[0], np.arange(n))   # shuffled
  np.testing.assert_array_equal(layout, cpr.cpr_layout(c, seed=5))   # fixed seed
  assert not np.array_equal(layout, cpr.cpr_layout(c, seed=6))
