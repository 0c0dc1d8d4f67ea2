"""cprfa-jax: CPRFA 3D face alignment in JAX, in layers that import downward only."""
# Layers (tests/test_layers.py checks them): the math of §2 (numerics; geometry: Eq. 2; mm: Eq. 1;
# cpr: §2.2, Eq. 3-4; decode: §2.1; metrics; render; report) -> nets (Flax modules and their
# builders) -> data, baselines, workdirs -> observe (images -> observations) -> train, evaluate,
# predict -> studies -> train.py, evaluate.py.
from cprfa_jax import cpr, decode, geometry, metrics, mm
