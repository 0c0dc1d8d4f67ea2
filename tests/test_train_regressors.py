"""The regressor stages (cpr, cpr_h, capu): the loss, training steps that lower it, the frozen
round 1 under CAPU training, and the observation helpers."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from configs import tiny
from cprfa_jax import cpr, observe, workdirs
from cprfa_jax.data import corrupt
from cprfa_jax.decode import pixel
from cprfa_jax.geometry import projection
from cprfa_jax.mm import shape, synthetic_model
from cprfa_jax.nets import build, initialise
from cprfa_jax.nets.regressor import generated_points
from cprfa_jax.train import loop
from cprfa_jax.train.stages import regressors

C = 16


@functools.lru_cache(maxsize=1)
def setup():
  m = synthetic_model(num_vertices=800, num_id=4, num_exp=2)
  rng = np.random.default_rng(0)
  left, right = cpr.select_vertices(rng.random(m.num_vertices), np.ones(m.num_vertices),
                                    np.asarray(m.mean_Vx3)[:, 0], C)
  sel, layout = cpr.selected_vertices(left, right), cpr.cpr_layout(C)
  b = 4
  alpha = rng.normal(0, 1, (b, 6)).astype(np.float32)
  pose = np.stack([[0.1, 0.4, 0.05, 0.8, 0.05, -0.02], [-0.1, -0.3, 0.0, 0.9, 0.0, 0.03],
                   [0.2, 0.1, -0.1, 0.7, -0.05, 0.0], [0.0, 0.6, 0.1, 1.0, 0.02, 0.02]]).astype(np.float32)
  y_all = np.asarray(jax.vmap(lambda a, p: projection.project(shape(m, a[:4], a[4:]), p))(alpha, pose))
  batch = {"y_all": y_all, "det_all": rng.random((b, m.num_vertices)) < 0.6,
           "y_lm": y_all[:, np.asarray(m.landmarks_68)] + rng.normal(0, 0.01, (b, 68, 2)).astype(np.float32),
           "det_lm": np.ones((b, 68), bool), "alpha": alpha, "pose": pose}
  config = tiny.get_config()
  config.cpr.max_sampled = 32
  return m, sel, layout, batch, config


def test_fit_loss_is_zero_at_the_truth_and_weights_later_stages_more():
  m, sel, _, batch, config = setup()
  pts = jnp.concatenate([jnp.asarray(m.landmarks_68), jnp.asarray(sel)])
  a, p = jnp.asarray(batch["alpha"]), jnp.asarray(batch["pose"])
  stack = lambda x: jnp.stack([x] * 3)
  loss, _ = regressors.fit_loss(m, pts, stack(a), stack(p), a, p, 0.1)
  assert float(loss) < 1e-6
  off = p.at[:, 4].add(0.1)                          # every point shifted by 0.1 in x
  first, _ = regressors.fit_loss(m, pts, stack(a), jnp.stack([off, p, p]), a, p, 0.0)
  last, _ = regressors.fit_loss(m, pts, stack(a), jnp.stack([p, p, off]), a, p, 0.0)
  np.testing.assert_allclose(float(first), (1 / 6) * float(jnp.mean(0.1 / p[:, 3])), rtol=1e-4)
  np.testing.assert_allclose(float(last), 3 * float(first), rtol=1e-4)     # w_q ∝ q


def _train(stage, frozen=None, steps=12):
  m, sel, layout, batch, config = setup()
  init_fn, loss_fn = regressors.stage_fns(config, m, stage, sel, layout, frozen)
  params = initialise.init_jitted(init_fn, jax.random.PRNGKey(0), batch)
  tx = optax.adam(3e-3)
  state = loop.TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                          rng=jax.random.PRNGKey(1))
  step = jax.jit(loop.make_train_step(loss_fn, tx))
  losses = []
  for _ in range(steps):
    state, metrics = step(state, batch)
    losses.append(float(metrics["loss"]))
  return losses, state.params


def test_training_steps_lower_the_loss_round_one():
  losses, _ = _train("cpr")
  assert losses[-1] < 0.9 * losses[0] and all(b <= a for a, b in zip(losses, losses[1:])), losses


def test_capu_trains_round_two_only_and_lowers_the_loss():
  m, sel, layout, batch, config = setup()
  init_h, _ = regressors.stage_fns(config, m, "cpr_h", sel, layout)
  frozen = initialise.init_jitted(init_h, jax.random.PRNGKey(5), batch)["stages_round1"]
  losses, params = _train("capu", frozen)
  assert set(params) == {"stages_round2"}      # round 1 is not a trained parameter
  assert losses[-1] < losses[0], losses


def test_corrupt_dafi_only_removes_pixels_and_stays_a_pncc_image():
  rng = np.random.default_rng(0)
  d = rng.random((3, 32, 32, 3)).astype(np.float32)
  mask = rng.random((3, 32, 32)) < 0.7
  cd, cm = corrupt.corrupt_dafi(d, mask, np.random.default_rng(1), max_holes=3)
  assert cd.shape == d.shape and cm.shape == mask.shape
  assert not np.any(cm & ~mask)                # no new face pixels
  assert cm.sum() < mask.sum()                 # holes
  assert 0 <= cd.min() and cd.max() <= 1
  assert 0 < np.abs(cd - d).mean() < 0.01


def test_observations_of_a_painted_pncc_image_are_the_true_projections():
  m = synthetic_model(num_vertices=800, num_id=4, num_exp=2)
  hw = (32, 32)
  tree = pixel.build_pncc_tree(m.pncc_Vx3)
  # Paint three vertices' PNCC colours at known pixels.
  d = np.zeros((1, 32, 32, 3), np.float32)
  mask = np.zeros((1, 32, 32), bool)
  px = {5: (3, 4), 77: (20, 11), 300: (31, 0)}
  for v, (x, y) in px.items():
    d[0, y, x] = np.asarray(m.pncc_Vx3)[v]
    mask[0, y, x] = True
  lm = np.full((1, 68, 2), 15.5, np.float32)
  obs = observe.host_observations(d, mask, lm, tree, 0.01, hw, np.array([False]))
  assert obs["det_all"].sum() == 3 and not obs["det_lm"].any()
  for v, (x, y) in px.items():
    np.testing.assert_allclose(projection.to_pixels(obs["y_all"][0, v], hw), (x, y), atol=1e-5)
  np.testing.assert_allclose(obs["y_lm"][0, 0], projection.from_pixels(np.array([15.5, 15.5]), hw))


def test_bad_regressor_config_is_named():
  import pytest
  c = workdirs.stage_config(tiny.get_config(), "cpr")
  c.cpr.dafi_source = "gt"
  with pytest.raises(ValueError, match="cpr.dafi_source"):
    regressors.validate(c, "cpr")
  c.cpr.dafi_source, c.cpr.corruption = "corrupted_gt", "heavy"
  with pytest.raises(ValueError, match="cpr.corruption='heavy'"):
    regressors.validate(c, "cpr")
  c.cpr.corruption = "study"
  regressors.validate(c, "cpr")
  c.cpr.dafi_source, c.cpr.kappa = "unet", 0.0
  with pytest.raises(ValueError, match="cpr.kappa"):
    regressors.validate(c, "cpr")


def test_generated_points_of_the_truth_are_the_observations():
  m, sel, _, batch, _ = setup()
  y = generated_points(m, sel, jnp.asarray(batch["alpha"]), jnp.asarray(batch["pose"]))
  np.testing.assert_allclose(y, batch["y_all"][:, sel], atol=1e-5)


def test_fit_loss_gradient_is_finite_at_the_truth_and_where_s_crosses_zero():
  """The loss is a sum of distances: at the truth every distance is 0 (no derivative), and a
  prediction with s = 0 collapses the face onto t. Both must give finite gradients."""
  m, sel, _, batch, _ = setup()
  pts = jnp.concatenate([jnp.asarray(m.landmarks_68), jnp.asarray(sel)])
  a, p = jnp.asarray(batch["alpha"]), jnp.asarray(batch["pose"])
  loss = lambda aq, pq: regressors.fit_loss(m, pts, aq, pq, a, p, 0.1)[0]
  for pose in (p, p.at[:, 3].set(0.0), p.at[:, 3].set(-0.5)):
    g = jax.grad(loss, argnums=(0, 1))(jnp.stack([a] * 3), jnp.stack([pose] * 3))
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in g)


def test_the_kappa_sample_is_said_derived_or_capped():
  """§3.2's κ = 0.1 of the detected vertices: with max_sampled 0 the bound is ceil(κ V) and the
  stage says so; a smaller cap is named with its flag and the vertex count it cuts from."""
  model3d = synthetic_model(num_vertices=2000)
  v = model3d.num_vertices
  c = tiny.get_config()
  c.cpr.max_sampled = 0
  line = build.kappa_sample_line(c, model3d)
  assert f"up to {-(-v // 10)} per image" in line and "never capped" in line
  c.cpr.max_sampled = 32
  line = build.kappa_sample_line(c, model3d)
  assert "up to 32 per image" in line and "--config.cpr.max_sampled=32" in line
  assert "more than 320 detected" in line
