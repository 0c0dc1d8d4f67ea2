"""Projection (Eq. 2), pose conventions and visibility."""
from cprfa_jax.geometry.projection import *  # noqa: F401,F403
