"""cprfa-jax: CPRFA 3D face alignment in JAX."""
