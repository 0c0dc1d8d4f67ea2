"""A pipeline of random networks at a config's sizes, for the speed benchmarks (speed does not
depend on the weights): the networks' parameters, a random vertex selection, observations of
the right shapes, and a `Predictor` built from them. Imports no data stack (grain, tfds), so
`device_check.py` runs on accelerator images that lack it.

Parameters are drawn by NumPy at the shapes `jax.eval_shape` gives for the network's `init`,
which traces but never compiles or runs it: an eager Flax init of a regressor takes ~20 s on
2 CPU cores, a jitted one compiles for as long as its train step."""

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


def random_like(init, *args, seed: int = 0, scale: float = 0.05):
  """Random parameters of the shapes `init(*args)` returns, without running it: N(0, scale²)
  float leaves (other dtypes: zeros)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda a: (rng.normal(0.0, scale, a.shape).astype(a.dtype)
                 if jnp.issubdtype(a.dtype, jnp.floating) else np.zeros(a.shape, a.dtype)),
      jax.eval_shape(init, *args))


def regressor_params(config, model3d, stage, sel, layout, seed: int = 2):
  """Random parameters of a regressor stage's network (both rounds for capu)."""
  obs = observe.to_observations(zero_observations(model3d, 1), sel)
  net = build.regressor_network(config, model3d, stage)
  init = lambda key: net.init(key, model3d, jnp.asarray(sel), jnp.asarray(layout), obs,
                              key)["params"]
  return random_like(init, jax.random.PRNGKey(seed), seed=seed)


def random_predictor(config, model3d, stage: str = "capu", **kwargs) -> Predictor:
  """A predictor with random networks and a random vertex selection (same shapes as trained)."""
  s = config.data.image_size
  x = preprocess(np.zeros((1, s, s, 3), np.uint8))
  key = jax.random.PRNGKey(0)
  unet = random_like(lambda k: build.unet_network(config).init(k, x)["params"], key, seed=0)
  lmnet = random_like(lambda k: build.landmarks_network(config).init(k, x)["params"], key, seed=1)
  sel, layout = random_selection(config, model3d)
  params = {"dafi": unet, "landmarks": lmnet,
            "regressor": regressor_params(config, model3d, stage, sel, layout)}
  return Predictor(config, model3d, params, {"selected": sel, "layout": layout}, stage, **kwargs)
