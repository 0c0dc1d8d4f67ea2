"""cprfa-jax: CPRFA 3D face alignment in JAX.

Pure functions live in `geometry` (Eq. 2), `dafi` (§2.1), `cpr` (§2.2, Eq. 3-4) and `metrics`;
morphable models (Eq. 1) in `mm`.
"""
from cprfa_jax import cpr, dafi, geometry, metrics, mm
