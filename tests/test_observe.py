"""observe: the device observation step (`observe_images`, the one training, evaluation, the
studies and the predictor run) against its host reference (`host_observations`: the KD-tree
and the NumPy sub-pixel decoder), on rendered faces' true DAFIs and on a U-Net's output."""

import jax
import ml_collections
import numpy as np
import pytest

from cprfa_jax import observe
from cprfa_jax.data import sampler
from cprfa_jax.decode import pixel
from cprfa_jax.geometry import projection
from cprfa_jax.mm import synthetic_model
from cprfa_jax.nets import build, initialise

S = 40
MATCH = 0.03


@pytest.fixture(scope="module")
def faces():
  m = synthetic_model(num_vertices=1500, num_id=6, num_exp=3)
  exs = sampler.generate(m, range(5), sampler.SamplerConfig(image_size=S, max_yaw=60), 11)
  stack = lambda k: np.stack([e[k] for e in exs])
  return m, stack("image"), stack("dafi").astype(np.float32), stack("mask").astype(bool)


def _tied_vertices(dafi, mask, tree):
  """(image, vertex) pairs that are one of two equally near codes of some face pixel: the
  procedural face is symmetric, so a pixel can sit halfway between two vertex codes, and the
  KD-tree and the grid break the tie differently."""
  out = set()
  for i in range(len(dafi)):
    dd, idx = tree.query(dafi[i][mask[i]].astype(np.float64), k=2)
    tie = np.abs(dd[:, 0] - dd[:, 1]) <= 1e-6 * dd[:, 1]
    out |= {(i, int(v)) for v in idx[tie].ravel()}
  return out


def _config():
  c = ml_collections.ConfigDict()
  c.unet = {"widths": (4, 8, 8)}
  c.lmnet = {"widths": (4, 8)}
  c.cpr = {"decode": "pixel", "match_dist": MATCH}
  return c


@pytest.mark.parametrize("method,px_tol", [
    # pixel: the same matched pixels averaged, float32 on both sides (a mean of <= 10^3
    # coordinates < 40 px: ~1e-5 px); subpixel: float32 device solve vs float64 host.
    ("pixel", 1e-4), ("subpixel", 1e-3)])
def test_device_observations_equal_the_host_reference(faces, method, px_tol):
  m, images, dafi, mask = faces
  nets = observe.nets_of(_config(), with_landmarks=False, method=method)
  codes = observe.codes_of(m, MATCH)
  present = np.array([True, False, True, True, False])
  dev = jax.device_get(observe.observe_images_jit(nets, None, None, codes, images, (dafi, mask),
                                                  present))
  tree = pixel.build_pncc_tree(m.pncc_Vx3)
  host = observe.host_observations(dafi, mask, None, tree, MATCH, (S, S), decode=method)
  assert host["det_all"].sum() > 0.15 * host["det_all"].size   # 40 px: ~1 pixel per vertex
  flipped = {tuple(map(int, x)) for x in np.argwhere(dev["det_all"] != host["det_all"])}
  if method == "pixel":    # only at exact ties
    assert flipped <= _tied_vertices(dafi, mask, tree), flipped - _tied_vertices(dafi, mask, tree)
  else:                    # a float32 residual at the threshold could flip a flag
    assert len(flipped) <= 2, flipped
  both = dev["det_all"] & host["det_all"]
  f = S / 2.0                                   # normalised units -> pixels
  np.testing.assert_allclose(dev["y_all"][both], host["y_all"][both], atol=px_tol / f, rtol=0)
  np.testing.assert_allclose(projection.from_pixels(dev["px_all"], (S, S)), dev["y_all"],
                             atol=1e-6)
  # The given DAFI is what was decoded; no landmark branch, no landmark keys.
  np.testing.assert_array_equal(dev["dafi"], dafi)
  assert "y_lm" not in dev and "det_lm" not in dev


def test_unet_observations_equal_decoding_the_unets_output(faces):
  m, images, _, _ = faces
  config = _config()
  key = jax.random.PRNGKey(0)
  x = build.preprocess(images[:1])
  unet_p = initialise.init_jitted(lambda k: build.unet_network(config).init(k, x)["params"], key)
  lm_p = initialise.init_jitted(lambda k: build.landmarks_network(config).init(k, x)["params"], key)
  codes = observe.codes_of(m, MATCH)
  present = np.array([True, False, True, True, False])
  dev = jax.device_get(observe.observe_images_jit(observe.nets_of(config, True), unet_p, lm_p,
                                                  codes, images, None, present))
  d, prob = build.unet(config)(unet_p, images)
  lm = np.asarray(build.landmarks(config)(lm_p, images)[0])
  host = observe.host_observations(np.asarray(d), np.asarray(prob) > 0.5, lm,
                                   pixel.build_pncc_tree(m.pncc_Vx3), MATCH, (S, S), present)
  np.testing.assert_array_equal(dev["mask"], np.asarray(prob) > 0.5)
  assert host["det_all"].sum() > 0, "an untrained U-Net's codes should still match some"
  assert (dev["det_all"] != host["det_all"]).sum() <= 2
  both = dev["det_all"] & host["det_all"]
  np.testing.assert_allclose(dev["y_all"][both], host["y_all"][both], atol=1e-4 / (S / 2), rtol=0)
  np.testing.assert_allclose(dev["landmarks_px"], lm, atol=1e-4)
  np.testing.assert_allclose(dev["y_lm"], host["y_lm"], atol=1e-6)
  np.testing.assert_array_equal(dev["det_lm"], host["det_lm"])
  assert not dev["det_lm"][1].any() and dev["det_lm"][0].all()


def test_a_set_decoded_in_padded_batches_equals_one_batch(faces):
  m, _, dafi, mask = faces
  codes = observe.codes_of(m, MATCH)
  whole = jax.device_get(observe.decode_observations_jit("pixel", codes, dafi, mask))
  parts = observe.decode_set_arrays("pixel", codes, dafi, mask, batch_size=2)   # 2 + 2 + 1
  assert parts["y_all"].shape == whole["y_all"].shape
  np.testing.assert_array_equal(parts["det_all"], whole["det_all"])
  np.testing.assert_allclose(parts["y_all"], whole["y_all"], atol=1e-6)


def test_an_unknown_decoder_is_named():
  c = _config()
  c.cpr.decode = "bilinear"
  with pytest.raises(ValueError, match="cpr.decode='bilinear'"):
    observe.nets_of(c, with_landmarks=False)
