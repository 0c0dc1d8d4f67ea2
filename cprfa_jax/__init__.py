"""cprfa-jax: CPRFA 3D face alignment in JAX, in layers that import downward only."""
# Layers (tests/test_layers.py checks them): the math of §2 (numerics; geometry: Eq. 2; mm: Eq. 1;
# cpr: §2.2, Eq. 3-4; decode: §2.1; metrics; render; report) -> nets (Flax modules and their
# builders) -> data, baselines, workdirs -> observe (images -> observations) -> train, evaluate,
# predict -> studies -> train.py, evaluate.py.
#
# `cprfa_jax.cpr`, `.decode`, `.geometry`, `.metrics` and `.mm` load on first use (PEP 562), not
# when the package is imported: the command lines (`cprfa_jax.cli`) answer --help and flag
# errors without importing jax (train.py --helpfull: 0.10 s against 3.02 s on this 2-core CPU).
import importlib

_LAZY_SUBMODULES = ("cpr", "decode", "geometry", "metrics", "mm")


def __getattr__(name):
  if name in _LAZY_SUBMODULES:
    return importlib.import_module(f"cprfa_jax.{name}")
  raise AttributeError(f"module 'cprfa_jax' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_LAZY_SUBMODULES))
