"""The evaluation sets: built on first use (the synthetic ones), or read and checked against
the config (tfds sets: 300W-LP's AFLW2000-3D, the AFLW and COFW benchmarks)."""

from __future__ import annotations

from cprfa_jax import metrics
from cprfa_jax.data import datasets, tfds_io


def is_benchmark(source) -> bool:
  """A set scored by a benchmark protocol (AFLW's 21 points, COFW-68: `data.aflw`,
  `data.cofw`), recognised by its metadata: it has no 3DMM ground truth, so no Table 1."""
  return (getattr(source, "metadata", None) or {}).get("protocol") in metrics.PROTOCOLS


def eval_source(config, model3d, name, log):
  """An eval set, built (only as many images as are scored) if it is not yet. A tfds set is
  checked against the config: its image size, and its model when it carries 3DMM ground truth."""
  if not name.startswith("tfds:"):
    return datasets.ensure_set(model3d, name, config.data.data_dir, config.data.image_size,
                               config.data.num_eval or None, log=log)
  src = tfds_io.read_dataset(name.split(":", 1)[1], config.data.data_dir, split="test")
  size = src.metadata.get("image_size")
  if is_benchmark(src) and size != config.data.image_size:
    raise ValueError(f"{name} ({src.path}) was built at {size} px but --config.data.image_size="
                     f"{config.data.image_size}: rebuild it with --image-size "
                     f"{config.data.image_size}")
  if "alpha_id" in src.spec:
    tfds_io.check_model(src, model3d, config.data.image_size, name)
  return src
