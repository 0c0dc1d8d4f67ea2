"""nets.initialise: an init compiled at the CPU's cheaper level makes the parameters jit makes at
XLA's default, bit for bit (the published numbers start from them), and keeps its shardings.

The reference is compiled at XLA's default CPU level (3) explicitly: this process compiles at
level 2 (tests/conftest.py), and an explicit option overrides XLA_FLAGS."""

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from configs import tiny
from cprfa_jax.nets import build, initialise

XLA_DEFAULT = {"xla_backend_optimization_level": 3}   # XLA's DebugOptions default, what users get


def _unet_init(rng, x):
  return build.unet_network(tiny.get_config()).init(rng, x)["params"]


def test_unet_init_equals_the_default_compile_bit_for_bit():
  # The tiny U-Net's initialisers (conv kernels, biases, norms) at two seeds.
  x = build.preprocess(np.zeros((1, 32, 32, 3), np.uint8))
  # One reference compile serves both seeds (the key is an argument): ~10 s at level 3.
  default = jax.jit(_unet_init).lower(jax.random.PRNGKey(0), x).compile(
      compiler_options=XLA_DEFAULT)
  for seed in (0, 7):
    rng = jax.random.PRNGKey(seed)
    want = default(rng, x)
    got = initialise.init_jitted(_unet_init, rng, x)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for path, a, b in zip(jax.tree_util.tree_leaves_with_path(want), jax.tree.leaves(want),
                          jax.tree.leaves(got)):
      np.testing.assert_array_equal(np.asarray(b), np.asarray(a), err_msg=str(path[0]))


def test_init_keeps_its_out_shardings():
  mesh = jax.make_mesh((jax.device_count(),), ("data",))
  rep = NamedSharding(mesh, P())
  x = build.preprocess(np.zeros((1, 32, 32, 3), np.uint8))
  got = initialise.init_jitted(_unet_init, jax.random.PRNGKey(0), x, out_shardings=rep)
  assert all(leaf.sharding == rep for leaf in jax.tree.leaves(got))

