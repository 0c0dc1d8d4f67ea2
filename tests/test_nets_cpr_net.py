"""Building blocks of the CPR regressors: shapes, the recurrent state, β in (0, 2)."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cprfa_jax.nets.cpr_net import BetaNet, CprEncoder, RecurrentHead


def test_encoder_and_recurrent_head_shapes_under_jit_and_scan():
  enc, head = CprEncoder(width=4, features=16), RecurrentHead(hidden=8, out_dim=2)
  x = jnp.ones((2, 32, 32, 3))
  pe = enc.init(jax.random.PRNGKey(0), x)
  f = jax.jit(enc.apply)(pe, x)
  assert f.shape == (2, 16)
  inner = enc.apply(pe, x, method=CprEncoder.layers_to_6)
  assert inner.shape == (2, 4, 4, 12)   # 32 -> 16 -> 8 -> 4 after three stride-2 layers
  ph = head.init(jax.random.PRNGKey(1), jnp.zeros((2, 8)), f)

  def stage(h, _):
    h, delta = head.apply(ph, h, f)
    return h, delta

  h, deltas = jax.lax.scan(stage, jnp.zeros((2, 8)), None, length=3)   # q = 3 stages
  assert h.shape == (2, 8) and deltas.shape == (3, 2, 2)
  assert not np.allclose(deltas[0], deltas[1])     # the hidden state carries over


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 1000), scale=st.floats(1e-4, 1e4))
def test_beta_is_in_open_interval_and_scale_free(seed, scale):
  net = BetaNet()
  e = jnp.asarray(np.random.default_rng(seed).uniform(0.01, 5.0, (4, 10)), jnp.float32)
  params = net.init(jax.random.PRNGKey(seed), e)
  beta = net.apply(params, e)
  assert beta.shape == (4,) and np.all((beta > 0) & (beta < 2))
  np.testing.assert_allclose(net.apply(params, e * scale), beta, rtol=1e-4, atol=1e-5)
  assert np.all(np.isfinite(net.apply(params, jnp.zeros((2, 10)))))


def test_cross_fusion_exchanges_features_between_branches():
  from cprfa_jax.nets.cpr_net import CrossFusion
  net = CrossFusion(width=4, features=8)
  rng = np.random.default_rng(0)
  x1 = jnp.asarray(rng.normal(size=(2, 32, 32, 3)), jnp.float32)      # DAFI CPR, N = 32
  x2 = jnp.asarray(rng.normal(size=(2, 16, 16, 3)), jnp.float32)      # landmark CPR, N = 16
  params = net.init(jax.random.PRNGKey(0), x1, x2)
  f1, f2 = jax.jit(net.apply)(params, x1, x2)
  assert f1.shape == f2.shape == (2, 8)
  # Each branch's output depends on the other branch's input (the crossing), ...
  # (new inputs, not rescaled ones: GroupNorm would normalise a scale away).
  g1, _ = net.apply(params, x1, jnp.asarray(rng.normal(size=x2.shape), jnp.float32))
  _, h2 = net.apply(params, jnp.asarray(rng.normal(size=x1.shape), jnp.float32), x2)
  assert not np.allclose(g1, f1) and not np.allclose(h2, f2)
  # ... and the two branches have their own weights.
  assert {"branch_dafi", "branch_landmarks", "cross_to_dafi", "cross_to_landmarks"} <= set(params["params"])


def test_encoder_sees_the_level_of_its_input():
  """A scale error shifts every Λ_s entry by the same amount: the encoder must tell the
  difference between a small and a large shift (a normalisation layer would hide it)."""
  enc = CprEncoder(width=4, features=16)
  pattern = jnp.asarray(np.random.default_rng(0).random((1, 32, 32, 3)) < 0.5, jnp.float32)
  params = enc.init(jax.random.PRNGKey(0), pattern)
  small, large = enc.apply(params, 0.05 * pattern), enc.apply(params, 0.5 * pattern)
  assert not np.allclose(small, large, rtol=1e-2)


def test_flatten_read_out_reads_the_whole_sixth_layer_map():
  x = np.random.default_rng(1).random((2, 16, 16, 3)).astype(np.float32)
  for pool in ("mean", "flatten"):
    enc = CprEncoder(width=4, features=8, pool=pool)
    params = enc.init(jax.random.PRNGKey(0), x)
    assert np.asarray(jax.jit(enc.apply)(params, x)).shape == (2, 8)
    # Six layers, stride 2 on three of them: 16 -> 2 x 2 cells of 4 * 3 channels; the mean
    # read-out sees 12 numbers, the flatten one all 48 (each cell's position kept).
    assert params["params"]["dense"]["kernel"].shape[0] == (12 if pool == "mean" else 48)
