"""Models by name, for configs and command lines: `load_model("synthetic")`,
`load_model("synthetic:20000")` (vertex count), `load_model("sfm:/path/to/sfm_dir")`,
`load_model("npz:/path/model.npz")`, `load_model("bfm3ddfa:/path/bfm.mat")`."""

from __future__ import annotations

from cprfa_jax.mm.model import MorphableModel, ModelFormatError, load_npz


def load_model(spec: str) -> MorphableModel:
  kind, _, arg = spec.partition(":")
  if kind == "synthetic":
    from cprfa_jax.mm.synthetic import synthetic_model
    return synthetic_model(num_vertices=int(arg)) if arg else synthetic_model()
  if not arg:
    raise ModelFormatError(f"model {spec!r}: {kind!r} needs a path, e.g. '{kind}:/path'")
  if kind == "sfm":
    from cprfa_jax.mm.sfm import load_sfm
    return load_sfm(arg)
  if kind == "npz":
    return load_npz(arg)
  if kind == "bfm3ddfa":
    from cprfa_jax.mm.bfm import load_bfm_3ddfa
    return load_bfm_3ddfa(arg)
  raise ModelFormatError(f"model {spec!r}: unknown kind {kind!r}; use synthetic[:V], sfm:DIR, "
                         "npz:FILE or bfm3ddfa:FILE")
