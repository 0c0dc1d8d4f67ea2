"""Convolutional Point-set Representation (§2.2): kernels, inputs of Eq. 4, vertex selection."""
from cprfa_jax.cpr.kernels import (CprInputs, batched_cpr_inputs, channel_cpr, cpr_inputs,
                                   kernel_rxy, kernel_rz, kernel_s, kernel_t, pair_mask,
                                   scale_ratio, third_vertex, translation_from_cpr)
from cprfa_jax.cpr.selection import (cpr_layout, select_vertices, selected_vertices,
                                     selection_probabilities)
