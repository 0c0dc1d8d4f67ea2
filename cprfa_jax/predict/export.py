"""`python -m cprfa_jax.predict export`: the compiled crop-to-face function (`core.fit_crops`
with the trained weights as constants) serialised with `jax.export`, to run where the project
is not installed (`predict.standalone`: jax and numpy only).

The batch dimension is symbolic ("b": any batch size, one artifact) unless `batch` is given;
the image size is fixed by the trained networks. The artifact is for the platform it was
exported on unless `platforms` names others (e.g. ("cpu", "cuda")).
"""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np

from cprfa_jax.predict import core
from cprfa_jax.predict.standalone import MAGIC

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")   # jax.export's lowering platforms
OUTPUTS = ("alpha", "pose", "vertices_px", "landmarks_px", "confidence", "detected", "failure",
           "dafi", "mask")


def exported(predictor, batch: int | None = None, platforms=None) -> jax.export.Exported:
  """The `jax.export.Exported` of `predictor`'s crop-to-face function."""
  fn = jax.jit(functools.partial(core.fit_crops, predictor.settings, predictor.weights))
  b = jax.export.symbolic_shape("b")[0] if batch is None else batch
  s = predictor.size
  specs = (jax.ShapeDtypeStruct((b, s, s, 3), jnp.uint8), jax.ShapeDtypeStruct((b,), jnp.float32),
           jax.ShapeDtypeStruct((b, 2), jnp.float32), jax.ShapeDtypeStruct((b, 68, 2), jnp.float32),
           jax.ShapeDtypeStruct((b,), jnp.bool_))
  return jax.export.export(fn, platforms=platforms)(*specs)


def header(predictor, batch) -> dict:
  m = predictor.model3d
  return {"format": 1, "image_size": predictor.size, "box_scale": predictor.box_scale,
          "batch": batch, "stage": predictor.stage, "model": m.name,
          "num_vertices": int(m.num_vertices), "num_alpha": int(m.num_id + m.num_exp),
          "failure_nme": float(predictor.config.eval.failure_nme),
          "triangles": np.asarray(m.triangles_Tx3).tolist(),
          "landmarks_68": np.asarray(m.landmarks_68).tolist(), "outputs": list(OUTPUTS)}


def write(predictor, path: str, batch: int | None = None, platforms=None) -> dict:
  """Writes the artifact (`predict.standalone` describes the layout); returns its header."""
  exp = exported(predictor, batch, platforms)
  head = header(predictor, batch)
  head["platforms"] = list(exp.platforms)
  text = json.dumps(head).encode()
  with open(path, "wb") as f:
    f.write(MAGIC + len(text).to_bytes(8, "little") + text + bytes(exp.serialize()))
  return head
