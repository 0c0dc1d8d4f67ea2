"""What the benchmark readers (`data.aflw`, `data.cofw`) share: the training data's framing of a
face, the tfds writer with the benchmark metadata, and the command line's common options."""

from __future__ import annotations

import sys

import numpy as np

from cprfa_jax.data import crops, tfds_io
from cprfa_jax.data.crops import ExampleError


def frame(image_HxWx3, box68_px_68x2, image_size: int, box_scale: float):
  """The training data's framing (`data.real`): (image (S, S, 3), to_crop(points) -> points),
  the crop square around the 68-point box, zero-padded, resized to S."""
  x0, y0, side = crops.crop_box(np.asarray(box68_px_68x2, np.float64), box_scale)
  k, b = crops.crop_affine(x0, y0, side, image_size)
  to_crop = lambda p: (k * np.asarray(p, np.float64) + b).astype(np.float32)
  return crops.crop_resize(image_HxWx3, x0, y0, side, image_size), to_crop


def write(name, examples, out_dir, spec_, meta, overwrite=False, encoding="bytes"):
  return tfds_io.write_dataset(name, examples, out_dir, spec_, split="test", metadata=meta,
                               encoding=encoding, overwrite=overwrite,
                               description=f"{meta['source']} ({meta['protocol']}) in the "
                                           "cprfa-jax benchmark schema")


def add_build_flags(p, default_name: str, unit: str) -> None:
  """The options every benchmark reader's CLI shares (`data.aflw`'s and `data.cofw`'s)."""
  p.add_argument("--out", required=True, help="tfds data_dir to write into")
  p.add_argument("--name", help=f"dataset name (default {default_name})")
  p.add_argument("--image-size", type=int, default=128)
  p.add_argument("--box-scale", type=float, default=2.0)
  p.add_argument("--on-error", choices=("skip", "stop"), default="stop")
  p.add_argument("--limit", type=int, help=f"only the first N {unit} (a quick try)")
  p.add_argument("--overwrite", action="store_true")


def run_build(build_fn, a, *args, **kwargs) -> None:
  """Calls a reader's `build` with the shared options of `a`; a user error is one line."""
  try:
    out = build_fn(*args, out_dir=a.out, image_size=a.image_size, box_scale=a.box_scale,
                   name=a.name, limit=a.limit, on_error=a.on_error, overwrite=a.overwrite,
                   **kwargs)
  except (OSError, ExampleError) as e:
    sys.exit(f"error: {e}")
  print(f"wrote {out}")
