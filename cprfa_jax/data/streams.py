"""Training batches for every stage from one place: `config.data.train`.

    synthetic    faces rendered on the fly (`datasets.TrainStream`, batched on the device)
    tfds:NAME    a persisted set, e.g. 300W-LP (`data.real`), read through `tfds.data_source`
                 and a Grain pipeline

The HS-U-Net, the landmark network and the three regressor stages all take their batches from
`batches_fn(config, model3d, keys)`; the regressors then see the trained U-Net's DAFIs of *those*
images (`observe.Observer`). Each stage stacks only the keys it uses.

Contract (`train.loop`): `batches(start)` yields this process's share of the global batches
start + 1, start + 2, ... Global batch k is the same whatever step a run resumed at and however
many processes share it:

* tfds: a Grain `MapDataset` over the training indices, shuffled with a fresh permutation per
  epoch (`shuffle(seed).repeat()`), §3.2's augmentation as a `random_map` (its generator is a
  function of the seed and the example's position in the stream), batched by the per-process
  batch b, and process p of n takes mini-batches p, p + n, ...: examples [kG + pb, kG + pb + b)
  of the stream, G = nb, in the order one process would see them. Because a `MapDataset` is
  random access, the iterator's whole state is the step the orbax checkpoint already holds:
  `ds[start:]` resumes exactly, with no separate iterator checkpoint to keep in sync.
  Reading and augmenting run ahead in `data.loader_threads` threads (Grain's `ReadOptions`), or
  in `data.loader_workers` processes (`mp_prefetch`).
* synthetic: batch k holds the seeds of `datasets.TrainStream`, each process its slice.

§3.1's reference set ("about 1% of images are reserved as a reference database to select the
discriminative pixels for CPR") is held out of training: `reference_indices` picks
`data.num_reference` training examples deterministically (the same for every seed and run) and
`batches_fn` never yields them. Synthetic runs render their own reference set (a stream no
training batch uses).
"""

from __future__ import annotations

import grain
import jax
import numpy as np
from jax.experimental import multihost_utils

from cprfa_jax.data import augment, datasets, tfds_io

# A fixed stream for the held-out choice: the reference set must not move when the seed does
# (the vertex selection made on it is stored with the U-Net).
_REFERENCE_STREAM = 31


def is_tfds(config) -> bool:
  return config.data.train.startswith("tfds:")


def check_data_train(config) -> None:
  if not (config.data.train == "synthetic" or is_tfds(config)):
    raise ValueError(f"--config.data.train={config.data.train!r}: use 'synthetic' or 'tfds:NAME'")


def open_train_set(config, model3d) -> tfds_io.ExampleSource:
  """The whole `train` split of a tfds `data.train` (reference images included), checked
  against the config's model and image size."""
  name = config.data.train.split(":", 1)[1]
  source = tfds_io.read_dataset(name, config.data.data_dir, split="train")
  tfds_io.check_model(source, model3d, config.data.image_size,
                      f"--config.data.train={config.data.train}")
  return source


def reference_indices(num_examples: int, num_reference: int) -> np.ndarray:
  """Sorted indices of the held-out reference examples (§3.1): `num_reference` of them, at least
  one training example left. A function of the two counts only."""
  if not 0 < num_reference < num_examples:
    raise ValueError(f"--config.data.num_reference={num_reference}: hold out between 1 and "
                     f"{num_examples - 1} of the {num_examples} training examples (§3.1: ~1%, "
                     f"{max(1, round(0.01 * num_examples))})")
  rng = np.random.default_rng([_REFERENCE_STREAM, num_examples])
  return np.sort(rng.choice(num_examples, num_reference, replace=False))


def training_indices(num_examples: int, num_reference: int) -> np.ndarray:
  """Every index of the split that is not a reference index, in order."""
  keep = np.ones(num_examples, bool)
  keep[reference_indices(num_examples, num_reference)] = False
  return np.flatnonzero(keep)


class Subset:
  """The examples of `source` at `indices`, as a random-access sequence (what Grain reads)."""

  def __init__(self, source, indices):
    self.source, self.indices = source, np.asarray(indices)

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, i):
    return self.source[int(self.indices[i])]

  def __repr__(self):
    return f"Subset({self.source!r}, {len(self)} examples)"


def reference_set(config, model3d, log=print):
  """The images §2.2's vertex selection runs on: the held-out `data.num_reference` examples of a
  tfds training set, or the synthetic reference set (rendered and persisted once)."""
  if is_tfds(config):
    source = open_train_set(config, model3d)
    return Subset(source, reference_indices(len(source), config.data.num_reference))
  args = (model3d, "reference", config.data.data_dir, config.data.image_size)
  if jax.process_count() == 1:
    return datasets.ensure_set(*args, config.data.num_reference, log=log)
  # Several processes share data_dir: one renders and writes, the others wait and read, so no
  # process reads a set another is rewriting.
  if jax.process_index() == 0:
    datasets.ensure_set(*args, config.data.num_reference, log=log)
  multihost_utils.sync_global_devices("cprfa reference set")
  return datasets.load_set("reference", model3d, config.data.data_dir,
                           config.data.image_size).head(config.data.num_reference)


def _pick(keys):
  return lambda ex: {k: ex[k] for k in keys}


def _augment(example, rng):
  # §3.2: "rotation, translation, and scaling"; ranges as `augment.similarity_params`.
  return augment.augment_example(example, *augment.similarity_params(rng))


def grain_batches(source, batch_size: int, seed: int, keys, *, augmented: bool,
                  process=(0, 1), threads: int = 4, workers: int = 0):
  """batches(start) over a random-access `source` (module docstring); batch_size is this
  process's share, process = (index, count)."""
  p, n = process
  global_b = batch_size * n
  if len(source) < global_b:
    raise ValueError(f"{source!r} has {len(source)} examples, fewer than one global batch of "
                     f"{global_b}: lower the stage's train.batch_size "
                     "(--config.<unet|lmnet|cpr>.train.batch_size)")
  ds = grain.MapDataset.source(source).shuffle(seed=seed).repeat().map(_pick(keys))
  if augmented:
    ds = ds.random_map(_augment, seed=seed)
  ds = ds.batch(batch_size)[p::n]

  def batches(start: int):
    it = ds[start:].to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                                      prefetch_buffer_size=max(2 * threads, 2)))
    if workers:
      it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return iter(it)

  return batches


def batches_fn(config, model3d, keys):
  """batches(start) -> iterator of this process's host batches (dicts of NumPy arrays holding
  `keys`) for the batches start + 1, ... of `config.data.train` (the stage's `train` block gives
  the global batch size)."""
  check_data_train(config)
  n, p = jax.process_count(), jax.process_index()
  b = config.train.batch_size // n
  if is_tfds(config):
    source = open_train_set(config, model3d)
    train = Subset(source, training_indices(len(source), config.data.num_reference))
    return grain_batches(train, b, config.seed, tuple(keys), augmented=config.data.augment,
                         process=(p, n), threads=config.data.get("loader_threads", 4),
                         workers=config.data.get("loader_workers", 0))
  if config.data.augment:
    raise ValueError("--config.data.augment=True is for real training sets (tfds:NAME): the "
                     "synthetic stream already varies pose, framing and scale")
  return lambda start: datasets.TrainStream(model3d, b, config.data.image_size,
                                            start_batch=start, host=(p, n), keys=tuple(keys))
