"""nets.build: the one builder of each network and the compile cache, against applying the Flax
modules by hand (the jitted U-Net is the last side output through a sigmoid, the landmark
network a soft-argmax of its heatmaps), the stage variants and the regressor's inference keys."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from cprfa_jax.mm import synthetic_model
from cprfa_jax.nets import build, initialise

TOL = dict(rtol=1e-5, atol=1e-5)     # two compilations in float32: a few ulps of O(1) values


def _images(b=2, s=32, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (b, s, s, 3), dtype=np.uint8)


def test_preprocess_centres_uint8_on_zero():
  x = np.array([[[[0, 255, 51]]]], np.uint8)
  np.testing.assert_allclose(build.preprocess(x), [[[[-0.5, 0.5, 51 / 255 - 0.5]]]], atol=1e-7)


def test_jitted_unet_is_the_last_side_output_as_probabilities():
  config = tiny.get_config()
  images = _images()
  net = build.unet_network(config)
  params = initialise.init_jitted(net.init, jax.random.PRNGKey(0), build.preprocess(images[:1]))["params"]
  dafi, prob = build.unet(config)(params, images)
  x = (images.astype(np.float32) / 255.0) - 0.5
  want_dafi, logits = jax.jit(net.apply)({"params": params}, x)[-1]
  np.testing.assert_allclose(dafi, want_dafi, **TOL)
  np.testing.assert_allclose(prob, 1.0 / (1.0 + np.exp(-np.asarray(logits))), **TOL)
  assert dafi.shape == (2, 32, 32, 3) and prob.shape == (2, 32, 32)


def test_jitted_landmarks_are_the_heatmaps_soft_argmax():
  config = tiny.get_config()
  images = _images(seed=1)
  net = build.landmarks_network(config)
  params = initialise.init_jitted(net.init, jax.random.PRNGKey(1), build.preprocess(images[:1]))["params"]
  pts, conf = build.landmarks(config)(params, images)
  logits = np.asarray(jax.jit(net.apply)({"params": params}, build.preprocess(images)), np.float64)
  b, h, w, k = logits.shape
  p = np.exp(logits - logits.max(axis=(1, 2), keepdims=True))
  p /= p.sum(axis=(1, 2), keepdims=True)
  # Cell (i, j) of the stride-2 map covers input pixels 2j..2j+1: its centre is 2j + 0.5.
  xs, ys = 2 * np.arange(w) + 0.5, 2 * np.arange(h) + 0.5
  want = np.stack([np.einsum("bhwk,w->bk", p, xs), np.einsum("bhwk,h->bk", p, ys)], -1)
  np.testing.assert_allclose(pts, want, rtol=1e-4, atol=1e-3)
  assert conf.shape == (2, 68) and np.all((0 <= conf) & (conf <= 1 + 1e-6))


@pytest.mark.parametrize("stage, fusion, capu", [("cpr", False, False), ("cpr_h", True, False),
                                                 ("capu", True, True)])
def test_regressor_network_has_the_stage_branches(stage, fusion, capu):
  config = tiny.get_config()
  model3d = synthetic_model(num_vertices=600, num_id=3, num_exp=2, seed=0)
  net = build.regressor_network(config, model3d, stage)
  assert (net.fusion, net.capu) == (fusion, capu)
  assert net.num_alpha == 5 and net.num_stages == config.cpr.num_stages
  assert build.regressor_network(config, model3d, stage) == net      # the compile cache's key


def test_unknown_regressor_stage_is_named():
  with pytest.raises(ValueError, match="'dafi'.*capu"):
    build.regressor_network(tiny.get_config(), synthetic_model(num_vertices=600), "dafi")


def test_inference_keys_are_one_key_repeated():
  keys = build.inference_keys(3, 4)
  assert keys.shape == (4, 2)
  np.testing.assert_array_equal(keys, jnp.tile(jax.random.PRNGKey(3), (4, 1)))


def test_equal_configs_share_one_compilation():
  # evaluate.py, the observer and the predictor each ask nets.build for the network of their
  # config: a second, equal config must reuse the compiled function, not trace it again.
  traces = []
  listen = lambda name, *a, **k: traces.append(name) if name.endswith("jaxpr_trace_duration") else None
  jax.monitoring.register_event_duration_secs_listener(listen)
  try:
    config = tiny.get_config()
    x = np.zeros((1, 32, 32, 3), np.float32)
    params = build.landmarks_network(config).init(jax.random.PRNGKey(0), x)["params"]
    images = np.zeros((5, 32, 32, 3), np.uint8)     # a batch no other test compiles
    jax.block_until_ready(build.landmarks(config)(params, images))
    first = len(traces)
    jax.block_until_ready(build.landmarks(tiny.get_config())(params, images))
    assert first >= 1 and len(traces) == first
    other = tiny.get_config()
    other.lmnet.widths = (8, 16)                    # another network: a new compilation
    params2 = build.landmarks_network(other).init(jax.random.PRNGKey(0), x)["params"]
    jax.block_until_ready(build.landmarks(other)(params2, images))
    assert len(traces) > first
  finally:
    jax.monitoring.unregister_event_duration_listener(listen)
