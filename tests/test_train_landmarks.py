"""The landmark network stage: soft-argmax and targets against NumPy, the network on `tiny`,
training, resuming, the predictor."""

import json

import chex
import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from configs import tiny
from cprfa_jax import mm, workdirs
from cprfa_jax.nets import build, initialise, landmark_net
from cprfa_jax.train import loop
from cprfa_jax.train.stages import landmarks


def tiny_config(**train):
  c = workdirs.stage_config(tiny.get_config(), "landmarks")
  c.train.update(train)
  return c


def _metrics(workdir):
  with open(workdir / "metrics.jsonl") as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def model3d():
  return mm.load_model(tiny.get_config().model)


def soft_argmax_reference(logits, stride):
  """One landmark at a time, with explicit loops over the cells."""
  b, h, w, k = logits.shape
  pts, conf = np.zeros((b, k, 2)), np.zeros((b, k))
  for i in range(b):
    for j in range(k):
      z = logits[i, :, :, j].astype(np.float64)
      p = np.exp(z - z.max())
      p /= p.sum()
      x = y = 0.0
      for r in range(h):
        for c in range(w):
          x += p[r, c] * (stride * c + (stride - 1) / 2)
          y += p[r, c] * (stride * r + (stride - 1) / 2)
      pts[i, j] = x, y
      for r in range(h):
        for c in range(w):
          cx, cy = stride * c + (stride - 1) / 2, stride * r + (stride - 1) / 2
          if (cx - x) ** 2 + (cy - y) ** 2 <= (landmark_net.CONFIDENCE_RADIUS * stride) ** 2:
            conf[i, j] += p[r, c]
  return pts, conf


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_soft_argmax_matches_numpy_reference(stride):
  logits = np.random.default_rng(stride).normal(0, 3, (2, 6, 7, 68)).astype(np.float32)
  pts, conf = jax.jit(landmark_net.soft_argmax, static_argnums=1)(logits, stride)
  ref_pts, ref_conf = soft_argmax_reference(logits, stride)
  chex.assert_shape([pts, conf], [(2, 68, 2), (2, 68)])
  np.testing.assert_allclose(pts, ref_pts, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(conf, ref_conf, rtol=1e-5, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(r=st.integers(0, 15), c=st.integers(0, 11), stride=st.sampled_from([1, 2, 4]))
def test_a_sharp_peak_is_found_at_its_cell_centre(r, c, stride):
  logits = np.full((1, 16, 12, 68), -50.0, np.float32)
  logits[0, r, c, :] = 50.0
  pts, conf = landmark_net.soft_argmax(logits, stride)
  centre = (stride * c + (stride - 1) / 2, stride * r + (stride - 1) / 2)
  np.testing.assert_allclose(pts[0], np.broadcast_to(centre, (68, 2)), atol=1e-3)
  np.testing.assert_allclose(conf, 1.0, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(x=st.floats(0, 31), y=st.floats(0, 31))
def test_target_peaks_at_the_nearest_cell_and_soft_argmax_inverts_it(x, y):
  """The target is a Gaussian in input pixels: it peaks in the cell holding the landmark, and
  its own soft-argmax (log-target logits) gives the landmark back (to the sub-pixel)."""
  stride, sigma = 2, 1.5
  lm = np.zeros((1, 68, 2), np.float32)
  lm[0, :] = x, y
  g = np.asarray(landmark_net.heatmap_targets(lm, (16, 16), sigma, stride))
  chex.assert_shape(g, (1, 16, 16, 68))
  r, c = np.unravel_index(np.argmax(g[0, :, :, 0]), (16, 16))
  assert abs(stride * c + 0.5 - x) <= 1.0 + 1e-4 and abs(stride * r + 0.5 - y) <= 1.0 + 1e-4
  assert g.max() <= 1.0
  pts, _ = landmark_net.soft_argmax(np.log(np.maximum(g, 1e-30)), stride)
  # A Gaussian cut off by the grid border is pulled inwards; away from it the mean is exact.
  if 3 * sigma * stride < min(x, y, 31 - x, 31 - y):
    np.testing.assert_allclose(pts[0, 0], (x, y), atol=0.02)


def test_loss_is_small_for_the_target_itself_and_large_for_a_shift():
  lm = np.random.default_rng(0).uniform(8, 24, (2, 68, 2)).astype(np.float32)
  g = landmark_net.heatmap_targets(lm, (16, 16), 1.5, 2)
  good, m = landmark_net.landmark_loss(np.log(np.maximum(g, 1e-30)), lm, 1.5, 2)
  bad, _ = landmark_net.landmark_loss(np.log(np.maximum(g, 1e-30)), lm + 4.0, 1.5, 2)
  assert float(m["kl"]) < 1e-4 and float(m["px_err"]) < 0.05
  assert float(bad) > float(good) + 1.0


def test_network_shapes_jit_and_vmap():
  config = tiny_config()
  net = build.landmarks_network(config)
  x = np.random.default_rng(0).normal(size=(2, 3, 32, 32, 3)).astype(np.float32)
  params = initialise.init_jitted(net.init, jax.random.PRNGKey(0), x[0])["params"]
  apply = lambda p, im: net.apply({"params": p}, im)
  out = jax.jit(apply)(params, x[0])
  chex.assert_shape(out, (3, 16, 16, 68))
  per_batch = jax.jit(jax.vmap(apply, in_axes=(None, 0)))(params, x)
  chex.assert_shape(per_batch, (2, 3, 16, 16, 68))
  np.testing.assert_allclose(per_batch[0], out, rtol=1e-4, atol=1e-4)
  pts, conf = build.landmarks(config)(params, np.zeros((3, 32, 32, 3), np.uint8))
  chex.assert_shape([pts, conf], [(3, 68, 2), (3, 68)])


def test_a_few_steps_lower_the_loss(tmp_path, model3d):
  """Same batch every step: the loss must fall (overfitting one batch is the minimum bar)."""
  config = tiny_config(num_steps=20, log_every=1, checkpoint_every=100)
  config.optim.lr, config.optim.lr_end = 3e-2, 1e-2
  batch = next(landmarks.train_batches(config, model3d)(0))
  assert set(batch) == set(landmarks.KEYS)
  init_fn, loss_fn = landmarks.stage_fns(config)

  def same_batch(start):
    while True:
      yield batch

  loop.train(config, str(tmp_path), init_fn, loss_fn, same_batch, log=lambda s: None)
  rows = _metrics(tmp_path)
  losses = [r["loss"] for r in rows]
  assert len(losses) == 20 and np.all(np.isfinite(losses))
  assert np.mean(losses[-3:]) < 0.7 * losses[0]
  assert rows[-1]["px_err"] < rows[0]["px_err"]


def test_run_then_resume_to_more_steps(tmp_path, model3d):
  logs = []
  state = landmarks.run(tiny_config(num_steps=2, checkpoint_every=2), str(tmp_path), model3d,
                        log=logs.append)
  assert int(state.step) == 2 and logs[0].startswith("initialised")
  logs = []
  state = landmarks.run(tiny_config(num_steps=4, checkpoint_every=2), str(tmp_path), model3d,
                        log=logs.append)
  assert logs[0].startswith("resumed from step 2") and int(state.step) == 4
  steps = [r["step"] for r in _metrics(tmp_path)]
  assert steps[-2:] == [2, 4]   # the resumed run logged step 4 only: it did not redo 1-2
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))


@pytest.mark.parametrize("field, value, flag", [
    ("widths", (8,), "lmnet.widths"),
    ("widths", (12, 24), "multiples of 8"),
    ("sigma", 0.0, "lmnet.sigma"),
])
def test_bad_config_values_are_named(field, value, flag):
  c = tiny_config()
  c.lmnet[field] = value
  with pytest.raises(ValueError, match=flag):
    landmarks.validate(c)
  c = tiny_config()
  c.data.image_size = 30
  with pytest.raises(ValueError, match="image_size=30"):
    landmarks.validate(c)
  c = tiny_config()
  c.optim.lr_end = 1.0
  with pytest.raises(ValueError, match="lmnet.optim.lr_end"):
    landmarks.validate(c)
