"""A pipeline of random networks at a config's sizes, for the speed benchmarks (speed does not
depend on the weights): the networks' parameters, a random vertex selection, observations of
the right shapes, and a `Predictor` built from them. Imports no data stack (grain, tfds), so
`device_check.py` runs on accelerator images that lack it."""

import jax
import jax.numpy as jnp
import numpy as np

from cprfa_jax import cpr, observe
from cprfa_jax.nets import build
from cprfa_jax.nets.build import preprocess
from cprfa_jax.predict.predictor import Predictor


def random_selection(config, model3d, seed: int = 0):
  """(selected (C,), layout (3, C/2)): C random vertices split by §2.2's rule."""
  rng = np.random.default_rng(seed)
  c, v = config.cpr.num_selected, model3d.num_vertices
  left, right = cpr.select_vertices(rng.random(v), np.ones(v), np.asarray(model3d.mean_Vx3)[:, 0], c)
  return cpr.selected_vertices(left, right), cpr.cpr_layout(c)


def zero_observations(model3d, batch: int) -> dict:
  """Host observations of `batch` faces (every vertex and landmark detected, at the origin)."""
  v = model3d.num_vertices
  return {"y_all": np.zeros((batch, v, 2), np.float32), "det_all": np.ones((batch, v), bool),
          "y_lm": np.zeros((batch, 68, 2), np.float32), "det_lm": np.ones((batch, 68), bool)}


def regressor_params(config, model3d, stage, sel, layout, seed: int = 2):
  """Random parameters of a regressor stage's network (both rounds for capu)."""
  obs = observe.to_observations(zero_observations(model3d, 1), sel)
  key = jax.random.PRNGKey(seed)
  return build.regressor_network(config, model3d, stage).init(
      key, model3d, jnp.asarray(sel), jnp.asarray(layout), obs, key)["params"]


def random_predictor(config, model3d, stage: str = "capu", **kwargs) -> Predictor:
  """A predictor with random networks and a random vertex selection (same shapes as trained)."""
  s = config.data.image_size
  x = preprocess(np.zeros((1, s, s, 3), np.uint8))
  unet = build.unet_network(config).init(jax.random.PRNGKey(0), x)
  lmnet = build.landmarks_network(config).init(jax.random.PRNGKey(1), x)
  sel, layout = random_selection(config, model3d)
  params = {"dafi": unet["params"], "landmarks": lmnet["params"],
            "regressor": regressor_params(config, model3d, stage, sel, layout)}
  return Predictor(config, model3d, params, {"selected": sel, "layout": layout}, stage, **kwargs)
