"""Morphable models (Eq. 1): the pytree, and readers for its sources."""
from cprfa_jax.mm.model import (vertices, MorphableModel, ModelFormatError, build_model, load_npz,
                                save_npz, shape)
from cprfa_jax.mm.sfm import load_sfm
from cprfa_jax.mm.bfm import load_bfm2009, load_bfm_3ddfa, params_from_300wlp
from cprfa_jax.mm.synthetic import synthetic_model
from cprfa_jax.mm.registry import load_model
