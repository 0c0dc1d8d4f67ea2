"""Training batches from a persisted tfds set: the hand-written record stream against Grain, in
one run over the same array_record files (issue 10, item 2: Grain "unless you measure it slower").

Writes a fixture set (synthetic `reference` examples at --image_size, the U-Net's keys, raw
bytes as `data.real` writes 300W-LP) under a temporary directory and reads it as the U-Net stage
does (image, DAFI, mask; batch --batch_size), with and without §3.2's augmentation:

  record_stream     the hand-written per-epoch permutation stream (`stages.dafi._RecordStream`
                    at d02bc39, copied here so the comparison outlives it), main thread;
  grain_map         `MapDataset.source(src).shuffle(seed).repeat().batch(b)`, read by index in
                    the main thread (no prefetch);
  grain_threads     the same `.to_iter_dataset(ReadOptions(num_threads=T, prefetch=2T))`;
  grain_workers     the same + `mp_prefetch(MultiprocessingOptions(num_workers=W))`;
  grain_dataloader  `DataLoader(IndexSampler(shuffle, seed, ShardOptions(0, 1)), Batch(b))`,
                    worker_count 0 and W;
  streams           the project's `data.streams.grain_batches` (what the stages run), if present.

Each variant's first batch (worker start-up, file opening) is timed apart as `first_s`; then
--batches batches are timed. Prints one JSON object.

    python benchmarks/data_loader.py [--num 256] [--image_size 128] [--batch_size 4]
"""

import argparse
import importlib.metadata
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from absl import flags  # noqa: E402
import grain  # noqa: E402
from cprfa_jax.data import augment, datasets, schema, tfds_io  # noqa: E402
from cprfa_jax.mm import load_model  # noqa: E402

KEYS = ("image", "dafi", "mask")


class RecordStream:
  """`stages.dafi._RecordStream` as of d02bc39 (one process): a fresh permutation per epoch from
  the seed, batch k read example by example, augmented per batch."""

  def __init__(self, source, batch_size, seed, augmented):
    self.source, self.b, self.seed, self.aug, self.k = source, batch_size, seed, augmented, 0

  def __iter__(self):
    return self

  def __next__(self):
    n = len(self.source)
    epoch, i = divmod(self.k, n // self.b)
    order = np.random.default_rng([self.seed, epoch]).permutation(n)
    exs = [self.source[int(j)] for j in order[i * self.b:(i + 1) * self.b]]
    if self.aug:
      rng = np.random.default_rng([self.seed, self.k, 0])   # each example its own draw
      exs = [augment.augment_example(e, *augment.similarity_params(rng)) for e in exs]
    self.k += 1
    return {key: np.stack([e[key] for e in exs]) for key in KEYS}


def _pick(example):
  return {k: example[k] for k in KEYS}


def _augment(example, rng):
  return augment.augment_example(example, *augment.similarity_params(rng))


def grain_map(source, b, seed, augmented):
  ds = grain.MapDataset.source(source).shuffle(seed=seed).repeat().map(_pick)
  if augmented:
    ds = ds.random_map(_augment, seed=seed)
  return ds.batch(b)


class _PickAugment(grain.transforms.RandomMap):
  def random_map(self, example, rng):
    return _augment(_pick(example), rng)


class _Pick(grain.transforms.Map):
  def map(self, example):
    return _pick(example)


def dataloader(source, b, seed, augmented, workers):
  sampler = grain.samplers.IndexSampler(
      len(source), shard_options=grain.sharding.ShardOptions(0, 1), shuffle=True, seed=seed)
  ops = [_PickAugment() if augmented else _Pick(), grain.transforms.Batch(b)]
  return grain.DataLoader(data_source=source, sampler=sampler, operations=ops,
                          worker_count=workers)


def variants(source, b, seed, augmented, threads, workers):
  """name -> a function making a fresh iterator of host batches."""
  read = grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * threads)
  out = {
      "record_stream": lambda: RecordStream(source, b, seed, augmented),
      "grain_map": lambda: (ds[i] for ds in [grain_map(source, b, seed, augmented)]
                            for i in range(10**9)),
      f"grain_threads_{threads}": lambda: iter(
          grain_map(source, b, seed, augmented).to_iter_dataset(read)),
      f"grain_threads_{threads}_workers_{workers}": lambda: iter(
          grain_map(source, b, seed, augmented).to_iter_dataset(read).mp_prefetch(
              grain.MultiprocessingOptions(num_workers=workers))),
      "grain_dataloader_workers_0": lambda: iter(dataloader(source, b, seed, augmented, 0)),
      f"grain_dataloader_workers_{workers}": lambda: iter(
          dataloader(source, b, seed, augmented, workers)),
  }
  try:
    from cprfa_jax.data import streams
    batches = streams.grain_batches(source, b, seed, KEYS, augmented=augmented, threads=threads)
    out[f"streams.grain_batches_threads_{threads}"] = lambda: batches(0)
  except (ImportError, AttributeError, TypeError) as e:   # the stages' loader moved or changed
    print(f"skipping data.streams.grain_batches: {e}", file=sys.stderr)
  return out


def time_variant(make, num_batches, b):
  t0 = time.perf_counter()
  it = make()
  first = next(it)
  assert first["image"].shape[0] == b and set(KEYS) <= set(first)
  first_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(num_batches):
    next(it)
  dt = time.perf_counter() - t0
  del it
  return {"first_s": round(first_s, 3), "batches_per_s": round(num_batches / dt, 1),
          "examples_per_s": round(num_batches * b / dt, 1)}


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--num", type=int, default=256, help="examples in the fixture set")
  ap.add_argument("--image_size", type=int, default=128)
  ap.add_argument("--batch_size", type=int, default=4)
  ap.add_argument("--batches", type=int, default=200, help="timed batches per variant")
  ap.add_argument("--threads", type=int, default=4, help="Grain read threads (ReadOptions)")
  ap.add_argument("--workers", type=int, default=2, help="Grain worker processes")
  ap.add_argument("--seed", type=int, default=0)
  a = ap.parse_args()
  flags.FLAGS.mark_as_parsed()   # Grain's worker processes read absl flags (train.py parses them)

  model = load_model("synthetic")
  with tempfile.TemporaryDirectory() as tmp:
    spec = schema.feature_spec((a.image_size,) * 2, model.num_id, model.num_exp)
    exs = datasets.examples(model, "reference", a.image_size, a.num)
    tfds_io.write_dataset("bench_fixture", exs, tmp, spec, split="train", encoding="bytes")
    source = tfds_io.read_dataset("bench_fixture", tmp, split="train")
    mb = sum(np.asarray(v).nbytes for k, v in source[0].items() if k in KEYS) / 2**20
    results = {}
    for augmented in (False, True):
      for name, make in variants(source, a.batch_size, a.seed, augmented, a.threads,
                                 a.workers).items():
        key = f"{name}{'_augmented' if augmented else ''}"
        results[key] = time_variant(make, a.batches, a.batch_size)
        print(key, results[key], file=sys.stderr, flush=True)
  base = {aug: results["record_stream" + aug]["examples_per_s"] for aug in ("", "_augmented")}
  for key, r in results.items():
    r["vs_record_stream"] = round(
        r["examples_per_s"] / base["_augmented" if key.endswith("_augmented") else ""], 2)
  print(json.dumps({
      "benchmark": "data_loader", "examples": a.num, "image_size": a.image_size,
      "batch_size": a.batch_size, "timed_batches": a.batches, "example_MiB": round(mb, 3),
      "grain": importlib.metadata.version("grain"),
      "cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
      "results": results}, indent=1))


if __name__ == "__main__":
  main()
