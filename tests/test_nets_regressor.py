"""The CPR fit (Eq. 4-8): shapes, jit, the sequential order of the groups, round 2, fusion."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from cprfa_jax import cpr
from cprfa_jax.cpr import path
from cprfa_jax.geometry import project
from cprfa_jax.mm import shape, synthetic_model
from cprfa_jax.nets import initialise
from cprfa_jax.nets.regressor import GROUPS, CprRegressor, Observations, generated_points, group_path_errors, sample_path_vertices

C = 16


def _init(net, *args):
  # Jitted as the training loop does (nets.initialise): an eager init of these scans compiles
  # each of its ops alone, slower than compiling the whole init once at the CPU's init level.
  return initialise.init_jitted(lambda key: net.init(key, *args), jax.random.PRNGKey(0))


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
  params = _init(net, m, sel, layout, Observations(y_obs, det))
  return m, sel, layout, y_obs, det, net, params


def test_generated_points_are_eq1_and_eq2():
  m, sel, _, _, _, _, _ = setup()
  alpha = jnp.arange(6, dtype=jnp.float32)[None] / 10
  pose = jnp.array([[0.1, 0.2, 0.3, 1.2, 0.1, 0.2]])
  want = project(shape(m, alpha[0, :4], alpha[0, 4:])[sel], pose[0])
  np.testing.assert_allclose(generated_points(m, sel, alpha, pose)[0], want, atol=1e-6)


def test_shapes_jit_and_stage_outputs():
  m, sel, layout, y_obs, det, net, params = setup()
  fn = jax.jit(lambda p, y, d: net.apply(p, m, sel, layout, Observations(y, d)))
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
  run = lambda p: net.apply(p, m, sel, layout, Observations(y_obs, det))["round1"]["seen"]
  base = run(params)
  after_alpha = run(_perturb(params, "alpha"))
  np.testing.assert_allclose(after_alpha["alpha"][0], base["alpha"][0])      # its own input: same
  assert np.abs(after_alpha["rxy"][0] - base["rxy"][0]).max() > 1e-3
  after_rxy = run(_perturb(params, "rxy"))
  np.testing.assert_allclose(after_rxy["rxy"][0], base["rxy"][0])
  assert np.abs(after_rxy["rz"][0] - base["rz"][0]).max() > 1e-3
  assert np.abs(after_rxy["s"][0] - base["s"][0]).max() > 1e-3


def _fusion_setup():
  m, sel, layout, y_obs, det, _, _ = setup()
  rng = np.random.default_rng(2)
  alpha = jnp.asarray(rng.normal(0, 1, (2, 6)), jnp.float32)
  pose = jnp.array([[0.1, 0.3, 0.05, 0.9, 0.02, -0.01], [-0.2, -0.5, 0.1, 1.1, -0.05, 0.03]])
  y_all = jax.vmap(lambda a, p: project(shape(m, a[:4], a[4:]), p))(alpha, pose)
  det_all = jnp.asarray(rng.random((2, m.num_vertices)) < 0.4)
  y_lm = y_all[:, np.asarray(m.landmarks_68)]
  obs = Observations(y_obs, det, y_all, det_all, y_lm, jnp.ones((2, 68), bool))
  return m, sel, layout, obs


@functools.lru_cache(maxsize=1)
def _fused_capu():
  """The capu stage's network (`build.VARIANTS`: fusion and round 2), its parameters and one
  jitted apply, shared by the tests below: each compiled network costs ~10 s on 2 CPU cores,
  and the tests read round 1, round 2 and the landmark branch of the same one (issue 23)."""
  m, sel, layout, obs = _fusion_setup()
  net = CprRegressor(num_alpha=6, width=4, features=16, hidden=8, fusion=True, capu=True,
                     max_sampled=64)
  key = jax.random.PRNGKey(3)
  params = _init(net, m, sel, layout, obs, key)
  apply = jax.jit(lambda p, o: net.apply(p, m, sel, layout, o, key))
  return obs, params, apply


def test_round_two_weights_pose_updates_and_leaves_alpha():
  obs, params, apply = _fused_capu()
  for o in (obs, obs._replace(y_lm=None, det_lm=None)):     # with and without landmarks
    out = apply(params, o)
    r1, r2 = out["round1"], out["round2"]
    assert "alpha" not in r2["seen"] and "alpha" not in r2["beta"]
    for g, beta in r2["beta"].items():
      assert beta.shape == (3, 2) and np.all((beta > 0) & (beta < 2)), g
    # α is updated in round 1 only.
    for q in range(3):
      np.testing.assert_array_equal(r2["alpha"][q], r1["alpha"][-1])
    np.testing.assert_array_equal(out["alpha"], r1["alpha"][-1])
    assert not np.allclose(out["pose"], r1["pose"][-1])
  # Round 2 has its own networks (§3.2).
  assert {"stages_round1", "stages_round2"} <= set(params["params"])


def test_fusion_runs_with_and_without_landmarks_and_each_branch_has_its_beta():
  obs, params, apply = _fused_capu()
  with_lm = apply(params, obs)
  no_lm = apply(params, obs._replace(y_lm=None, det_lm=None))
  r2 = with_lm["round2"]["beta"]
  assert set(r2) == {"rxy", "rxy_lm", "rz", "rz_lm", "s", "s_lm"}
  assert all(np.all((b > 0) & (b < 2)) for b in r2.values())
  assert set(no_lm["round2"]["beta"]) == {"rxy", "rz", "s"}
  assert np.all(np.isfinite(no_lm["pose"])) and np.all(np.isfinite(with_lm["pose"]))
  assert not np.allclose(with_lm["pose"], no_lm["pose"])     # the landmarks change the fit
  # An example whose landmarks are all missing gets the same fit as running without them.
  masked = obs._replace(det_lm=obs.det_lm.at[1].set(False))
  part = apply(params, masked)
  np.testing.assert_allclose(part["pose"][1], no_lm["pose"][1], atol=1e-5)
  assert not np.allclose(part["pose"][0], no_lm["pose"][0])


def test_fusion_updates_add_the_two_branches():
  """Eq. 8: φ += Δφ_C1 + Δφ_C2 (β = 1 in round 1). Shift the landmark branch's s read-out by
  b: the first stage's s moves by exactly b, whatever the DAFI branch predicted."""
  obs, params, apply = _fused_capu()
  base = apply(params, obs)["round1"]["pose"]
  p = jax.tree_util.tree_map(lambda x: x, params)
  p["params"]["stages_round1"]["rnn_lm_s"]["out"]["bias"] = (
      p["params"]["stages_round1"]["rnn_lm_s"]["out"]["bias"] + 0.05)
  np.testing.assert_allclose(apply(p, obs)["round1"]["pose"][0, :, 3] - base[0, :, 3], 0.05,
                             atol=1e-5)


def test_vmap_over_examples_equals_the_batched_fit():
  """Examples do not interact: the fit of a batch is the fit of each example, vmapped."""
  m, sel, layout, y_obs, det, net, params = setup()
  batched = jax.jit(lambda y, d: net.apply(params, m, sel, layout, Observations(y, d))["pose"])
  one = lambda y, d: net.apply(params, m, sel, layout, Observations(y[None], d[None]))["pose"][0]
  np.testing.assert_allclose(jax.jit(jax.vmap(one))(y_obs, det), batched(y_obs, det), atol=1e-5)


def _capu_setup(frac=0.4):
  m, sel, layout, y_obs, det, _, _ = setup()
  rng = np.random.default_rng(4)
  alpha = jnp.asarray(rng.normal(0, 1, (2, 6)), jnp.float32)
  pose = jnp.array([[0.1, 0.3, 0.05, 0.9, 0.02, -0.01], [-0.2, -0.5, 0.1, 1.1, -0.05, 0.03]])
  y_all = jax.vmap(lambda a, p: project(shape(m, a[:4], a[4:]), p))(alpha, pose)
  det_all = jnp.asarray(rng.random((2, m.num_vertices)) < frac)
  return m, sel, layout, Observations(y_obs, det, y_all, det_all), alpha, pose


def test_path_sample_is_kappa_of_the_detected_at_round_one_alpha():
  """The derived bound (κ = 0.1 of the model's V ≈ 850: ceil(κ · V) slots) holds all
  round(κ · #detected) ≈ 34 detected vertices of each example; their 3D points are Eq. 1 at
  the given α."""
  m, _, _, obs, alpha, _ = _capu_setup()
  k = path.sample_bound(0.1, m.num_vertices).k_max
  assert k == int(np.ceil(0.1 * m.num_vertices))
  s = sample_path_vertices(m, alpha, obs.y_all, obs.det_all, jax.random.PRNGKey(5), 0.1, k)
  shapes = {"idx": (2, k), "verts": (2, k, 3), "y_obs": (2, k, 2), "valid": (2, k)}
  assert {name: v.shape for name, v in s._asdict().items()} == shapes
  det_all = np.asarray(obs.det_all)
  for b in range(2):
    idx, valid = np.asarray(s.idx[b]), np.asarray(s.valid[b])
    assert int(valid.sum()) == int(np.round(np.float32(0.1) * det_all[b].sum())) > 0
    assert det_all[b, idx[valid]].all()
    want = np.asarray(shape(m, alpha[b, :4], alpha[b, 4:]))[idx]
    np.testing.assert_allclose(s.verts[b], want, atol=1e-5)
    np.testing.assert_allclose(s.y_obs[b], np.asarray(obs.y_all[b])[idx])


def test_group_path_errors_match_numpy():
  m, _, _, obs, alpha, pose = _capu_setup()
  s = sample_path_vertices(m, alpha, obs.y_all, obs.det_all, jax.random.PRNGKey(6), 0.1, 64)
  start = pose + jnp.array([0.05, -0.04, 0.03, 0.1, 0.01, 0.0])
  delta = jnp.array([[0.02], [-0.03]])
  got = group_path_errors(start, "rz", delta, s, 5)
  for b in range(2):
    v = np.asarray(s.valid[b])
    want = []
    for k in range(1, 11):
      p = np.array(start[b])
      p[2] += k / 5 * float(delta[b, 0])
      d = np.linalg.norm(np.asarray(project(s.verts[b], p)) - np.asarray(s.y_obs[b]), axis=-1)
      want.append(d[v].mean())
    np.testing.assert_allclose(got[b], want, rtol=1e-4, atol=1e-6)


def test_round_two_bound_is_derived_from_the_model_unless_capped():
  """max_sampled None (or 0) is ceil(κ · V): the same fit as an explicit bound of that size.
  With ~3k vertices all detected, κ · #detected ≈ 300 is above the old fixed 256, so capping at
  256 samples fewer points and changes β."""
  m = synthetic_model(num_vertices=3000, num_id=4, num_exp=2)
  x = np.asarray(m.mean_Vx3)[:, 0]
  rng = np.random.default_rng(8)
  sel = cpr.selected_vertices(*cpr.select_vertices(rng.random(m.num_vertices),
                                                    np.ones(m.num_vertices), x, C))
  layout = cpr.cpr_layout(C)
  alpha = jnp.asarray(rng.normal(0, 1, (1, 6)), jnp.float32)
  pose = jnp.array([[0.1, 0.3, 0.05, 0.9, 0.02, -0.01]])
  y_all = jax.vmap(lambda a, p: project(shape(m, a[:4], a[4:]), p))(alpha, pose)
  det_all = jnp.ones((1, m.num_vertices), bool)
  obs = Observations(y_all[:, sel], det_all[:, sel], y_all, det_all)
  key = jax.random.PRNGKey(7)
  bound = path.sample_bound(0.1, m.num_vertices)
  assert bound.k_max > 256 and path.sample_bound(0.1, m.num_vertices, 256).capped

  net = lambda max_sampled: CprRegressor(num_alpha=6, width=4, features=16, hidden=8, capu=True,
                                         max_sampled=max_sampled)
  # The parameters do not depend on the bound (it sizes a sample, not a layer): one init.
  params = _init(net(None), m, sel, layout, obs, key)
  # A large [r_x, r_y] step, so the errors along its path (and β) depend on the points used.
  r2 = params["params"]["stages_round2"]
  r2["rnn_rxy"]["out"]["bias"] = r2["rnn_rxy"]["out"]["bias"] + 0.3
  r2["beta_rxy"]["Dense_0"]["kernel"] = 10.0 * r2["beta_rxy"]["Dense_0"]["kernel"]

  def betas(max_sampled):
    return net(max_sampled).apply(params, m, sel, layout, obs, key)["round2"]["beta"]["rxy"]

  derived = betas(None)
  np.testing.assert_array_equal(derived, betas(0))
  np.testing.assert_array_equal(derived, betas(bound.k_max))
  assert np.abs(derived - betas(256)).max() > 1e-4
