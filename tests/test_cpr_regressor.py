"""Round 1 of the CPR fit (Eq. 4): shapes, jit, and the sequential order of the groups."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from cprfa_jax import cpr
from cprfa_jax.mm import shape, synthetic_model
from cprfa_jax.models.cpr_regressor import GROUPS, CprRegressor, generated_points
from cprfa_jax.geometry import project

C = 16


@functools.lru_cache(maxsize=1)
def setup():
  m = synthetic_model(num_vertices=800, num_id=4, num_exp=2)
  x = np.asarray(m.mean_Vx3)[:, 0]
  rng = np.random.default_rng(0)
  left, right = cpr.select_vertices(rng.random(m.num_vertices), np.ones(m.num_vertices), x, C)
  sel = cpr.selected_vertices(left, right)
  layout = cpr.cpr_layout(C)
  pose = jnp.array([[0.1, 0.3, 0.05, 0.9, 0.02, -0.01], [-0.2, -0.5, 0.1, 1.1, -0.05, 0.03]])
  alpha = jnp.asarray(rng.normal(0, 1, (2, 6)), jnp.float32)
  y_obs = generated_points(m, sel, alpha, pose)
  det = jnp.asarray(rng.random((2, C)) < 0.8)
  net = CprRegressor(num_alpha=6, width=4, features=16, hidden=8)
  params = net.init(jax.random.PRNGKey(0), m, sel, layout, y_obs, det)
  return m, sel, layout, y_obs, det, net, params


def test_generated_points_are_eq1_and_eq2():
  m, sel, _, _, _, _, _ = setup()
  alpha = jnp.arange(6, dtype=jnp.float32)[None] / 10
  pose = jnp.array([[0.1, 0.2, 0.3, 1.2, 0.1, 0.2]])
  want = project(shape(m, alpha[0, :4], alpha[0, 4:])[sel], pose[0])
  np.testing.assert_allclose(generated_points(m, sel, alpha, pose)[0], want, atol=1e-6)


def test_shapes_jit_and_stage_outputs():
  m, sel, layout, y_obs, det, net, params = setup()
  fn = jax.jit(lambda p, y, d: net.apply(p, m, sel, layout, y, d))
  out = fn(params, y_obs, det)
  alpha, pose, seen = out["alpha"], out["pose"], out["round1"]["seen"]
  alpha_q, pose_q = out["round1"]["alpha"], out["round1"]["pose"]
  assert alpha.shape == (2, 6) and pose.shape == (2, 6)
  assert alpha_q.shape == (3, 2, 6) and pose_q.shape == (3, 2, 6)     # q = 3 stages
  np.testing.assert_allclose(pose_q[-1], pose)
  for g in GROUPS:
    assert seen[g].shape == (3, 2, C // 2, C // 2, 3)
  assert np.all(np.isfinite(pose)) and np.all(np.isfinite(alpha))
  # The first stage starts from p0 = [0,0,0,1,0,0], alpha0 = 0 (§2.3): the α group's input is
  # the CPR of the mean shape at p0.
  y0 = generated_points(m, sel, jnp.zeros((2, 6)), jnp.tile(jnp.array([0, 0, 0, 1.0, 0, 0]), (2, 1)))
  want = cpr.batched_cpr_inputs(y_obs, y0, det, layout).rxy
  np.testing.assert_allclose(seen["alpha"][0], jnp.moveaxis(want, 1, -1), atol=1e-5)


def _perturb(params, group, scale=0.5):
  """Make one group's read-out produce a large update."""
  p = jax.tree_util.tree_map(lambda x: x, params)
  out = p["params"]["stages_round1"][f"rnn_{group}"]["out"]
  out["bias"] = out["bias"] + scale
  return p


def test_groups_update_in_sequence_not_in_parallel():
  """Changing the α read-out changes what the [r_x, r_y] group sees in the same stage, and
  changing [r_x, r_y] changes what r_z and s see: each group reads Λ^G rebuilt after the groups
  before it. With parallel updates (all from one Λ^G) these inputs would not move."""
  m, sel, layout, y_obs, det, net, params = setup()
  run = lambda p: net.apply(p, m, sel, layout, y_obs, det)["round1"]["seen"]
  base = run(params)
  after_alpha = run(_perturb(params, "alpha"))
  np.testing.assert_allclose(after_alpha["alpha"][0], base["alpha"][0])      # its own input: same
  assert np.abs(after_alpha["rxy"][0] - base["rxy"][0]).max() > 1e-3
  after_rxy = run(_perturb(params, "rxy"))
  np.testing.assert_allclose(after_rxy["rxy"][0], base["rxy"][0])
  assert np.abs(after_rxy["rz"][0] - base["rz"][0]).max() > 1e-3
  assert np.abs(after_rxy["s"][0] - base["s"][0]).max() > 1e-3


def test_round_two_weights_pose_updates_and_leaves_alpha():
  m, sel, layout, y_obs, det, _, _ = setup()
  rng = np.random.default_rng(1)
  alpha = jnp.asarray(rng.normal(0, 1, (2, 6)), jnp.float32)
  pose = jnp.array([[0.1, 0.3, 0.05, 0.9, 0.02, -0.01], [-0.2, -0.5, 0.1, 1.1, -0.05, 0.03]])
  y_all = jax.vmap(lambda a, p: project(shape(m, a[:4], a[4:]), p))(alpha, pose)
  det_all = jnp.asarray(rng.random((2, m.num_vertices)) < 0.4)
  net = CprRegressor(num_alpha=6, width=4, features=16, hidden=8, capu=True, max_sampled=64)
  args = (m, sel, layout, y_obs, det, y_all, det_all, jax.random.PRNGKey(3))
  params = net.init(jax.random.PRNGKey(0), *args)
  out = jax.jit(lambda p: net.apply(p, *args))(params)
  r1, r2 = out["round1"], out["round2"]
  assert set(r2["beta"]) == {"rxy", "rz", "s"} and "alpha" not in r2["seen"]
  for g, beta in r2["beta"].items():
    assert beta.shape == (3, 2) and np.all((beta > 0) & (beta < 2)), g
  # α is updated in round 1 only.
  for q in range(3):
    np.testing.assert_array_equal(r2["alpha"][q], r1["alpha"][-1])
  np.testing.assert_array_equal(out["alpha"], r1["alpha"][-1])
  assert not np.allclose(out["pose"], r1["pose"][-1])
  # Round 2 has its own networks (§3.2).
  assert {"stages_round1", "stages_round2"} <= set(params["params"])
