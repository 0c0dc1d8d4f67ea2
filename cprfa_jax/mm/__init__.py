"""Morphable models (Eq. 1): the pytree, and readers for its sources."""
from cprfa_jax.mm.model import (MorphableModel, ModelFormatError, build_model, load_npz,
                                save_npz, shape)
