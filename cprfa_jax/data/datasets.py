"""The synthetic data sets, deterministic by seed.

* `train`: any size, generated on the fly (`TrainStream`); batch k holds seeds k*B ... k*B+B-1,
  so a resumed run sees exactly the data it would have seen.
* `reference`: the held-out set of §3.1 ("about 1% of images are reserved as a reference
  database to select the discriminative pixels for CPR"), same distribution as train.
* `synth-aflw`: 2,000 faces balanced over the three |yaw| bins, mild occlusion (AFLW2000-3D).
* `synth-cofw`: 507 faces with heavy occlusion (COFW's test set size).

Each set has its own random stream, so no example of one set is an example of another. Fixed sets
persist as tfds array_record data sets (`data.tfds_io`), read the same way as the real ones.

    .venv/bin/python -m cprfa_jax.data.datasets --set synth-aflw --data-dir data --image-size 128
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import queue
import threading
import time

import numpy as np

from cprfa_jax.data import sampler, schema, tfds_io
from cprfa_jax.mm import load_model

SETS = {
    "train": (0, None, dict(occlusion="mild")),
    "reference": (1, 200, dict(occlusion="mild")),
    "synth-aflw": (2, 2000, dict(occlusion="mild", balanced_yaw=True)),
    "synth-cofw": (3, 507, dict(occlusion="heavy", max_yaw=60.0)),
}


def set_config(name: str, image_size: int, **overrides) -> sampler.SamplerConfig:
  if name not in SETS:
    raise ValueError(f"unknown data set {name!r}; choose from {sorted(SETS)}")
  return sampler.SamplerConfig(image_size=image_size, **{**SETS[name][2], **overrides})


def tfds_name(name: str, model, image_size: int) -> str:
  """e.g. synth_aflw_synthetic6083_128: the set, the model it was rendered from (name and vertex
  count, so two resolutions of one model never share a data set), the image size."""
  return f"{name.replace('-', '_')}_{model.name}{model.num_vertices}_{image_size}"


# Examples are rendered in chunks of CHUNK seeds aligned to multiples of CHUNK, whatever range
# is asked for: each example then comes from the same compiled program at the same batch
# position, so a set's first n examples are bit for bit those of any longer build (a different
# batch shape moves the landmark pixels by ~1e-6), and one compilation serves every chunk.
CHUNK = 64


def examples(model, name: str, image_size: int, num: int | None = None, start: int = 0,
             **overrides):
  """Yields the examples start .. start+num-1 of a set (each a pure function of its seed);
  overrides: `sampler.SamplerConfig` fields (e.g. head=True) on top of the set's own."""
  cfg = set_config(name, image_size, **overrides)
  stream, default_num, _ = SETS[name]
  num = num or default_num
  if num is None:
    raise ValueError(f"{name!r} has no fixed size: pass num")
  stop = start + num
  for lo in range(start // CHUNK * CHUNK, stop, CHUNK):
    chunk = sampler.generate(model, range(lo, lo + CHUNK), cfg, stream)
    yield from chunk[max(start - lo, 0):min(stop - lo, CHUNK)]


def set_metadata(model, name: str, image_size: int) -> dict:
  """What a persisted set's examples depend on (besides their count), in its metadata.json."""
  return {"set": name, "model": model.name, "num_vertices": model.num_vertices,
          "image_size": image_size, "num_id": model.num_id, "num_exp": model.num_exp,
          "sampler": dataclasses.asdict(set_config(name, image_size)), "stream": SETS[name][0],
          "chunk": CHUNK}


def build_set(model, name: str, data_dir, image_size: int = 128, num: int | None = None,
              overwrite: bool = False, reuse=None):
  """Renders a fixed set's first `num` examples (default: all) and writes them with tfds;
  returns the dataset directory. `reuse`: a persisted prefix of the same set (`ensure_set`),
  read back instead of rendered again."""
  num = num or SETS[name][1]
  have = 0 if reuse is None else min(len(reuse), num)
  spec = schema.feature_spec((image_size, image_size), model.num_id, model.num_exp)
  meta = {**set_metadata(model, name, image_size), "num": num, "complete": num == SETS[name][1]}
  exs = itertools.chain((reuse[i] for i in range(have)),
                        examples(model, name, image_size, num - have, start=have) if num > have
                        else ())
  return tfds_io.write_dataset(tfds_name(name, model, image_size), exs, data_dir, spec,
                               split="test", metadata=meta, overwrite=overwrite,
                               description=f"cprfa-jax synthetic set {name}")


def load_set(name: str, model, data_dir, image_size: int = 128):
  """The persisted set (`build_set`) as a random-access `tfds_io.ExampleSource`."""
  return tfds_io.read_dataset(tfds_name(name, model, image_size), data_dir, split="test")


def _same_recipe(saved: dict, current: dict) -> bool:
  # Through JSON, as metadata.json holds it: tuples come back as lists.
  norm = lambda d: json.loads(json.dumps(d, sort_keys=True, default=str))
  return norm({k: saved.get(k) for k in current}) == norm(current)


def ensure_set(model, name: str, data_dir, image_size: int, num: int | None = None,
               log=functools.partial(print, flush=True)):
  """The first `num` examples (default: the whole set) of a persisted set, as an ExampleSource
  of exactly that length, building only what is missing: a set persisted with fewer examples
  is extended (its examples read back, only the new ones rendered), one with more is read as
  its first `num` (the same examples, `examples`), one rendered with other settings or by
  older code (`set_metadata` differs) is rebuilt."""
  num = num or SETS[name][1]
  try:
    src = load_set(name, model, data_dir, image_size)
  except tfds_io.DatasetNotBuiltError:
    src = None
  if src is not None and not _same_recipe(src.metadata, set_metadata(model, name, image_size)):
    log(f"{src.path} was rendered with other settings or older code: rebuilding it")
    src = None
  if src is not None and len(src) >= num:
    return src.head(num)
  have = 0 if src is None else len(src)
  log(f"building {name} ({num} images at {image_size} px"
      f"{f', {have} of them already built' if have else ''}) in {data_dir} ...")
  build_set(model, name, data_dir, image_size, num, overwrite=True, reuse=src)
  return load_set(name, model, data_dir, image_size).head(num)


class TrainStream:
  """Endless training batches (stacked schema dicts) made by a background thread, so rendering
  overlaps with the train step. Deterministic: batch k is seeds [k*B, (k+1)*B) of `train`."""

  def __init__(self, model, batch_size: int, image_size: int, start_batch: int = 0,
               prefetch: int = 2, host=(0, 1), keys=None, **overrides):
    """host = (process index, process count): each process makes its own slice of global
    batch k, seeds ((k * count + index) * B, ...), B = this process's batch size.
    keys: the example keys to stack (default: every key of the schema)."""
    self.model, self.batch_size = model, batch_size
    self._host, self._hosts = host
    self._keys = keys
    self.cfg = set_config("train", image_size, **overrides)
    self._next = start_batch
    self._queue = queue.Queue(maxsize=prefetch)
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._work, daemon=True)
    self._thread.start()

  def _work(self):
    k = self._next
    while not self._stop.is_set():
      try:
        lo = (k * self._hosts + self._host) * self.batch_size
        exs = sampler.generate(self.model, range(lo, lo + self.batch_size), self.cfg,
                               SETS["train"][0])
        item = {key: np.stack([e[key] for e in exs]) for key in (self._keys or exs[0])}
      except Exception as e:  # surface the error in the consumer, not a silent dead thread
        item = e
      while not self._stop.is_set():
        try:
          self._queue.put(item, timeout=0.1)
          break
        except queue.Full:
          continue
      k += 1

  def __iter__(self):
    return self

  def __next__(self):
    item = self._queue.get()
    if isinstance(item, Exception):
      raise RuntimeError("the training data generator failed") from item
    return item

  def close(self):
    self._stop.set()
    # No timeout: the worker stops after the batch it is rendering, which can take longer than
    # any fixed wait on a loaded CPU; a daemon thread still inside XLA when the interpreter
    # exits aborts the process ("terminate called ... exception not rethrown").
    self._thread.join()


def main(argv=None):
  ap = argparse.ArgumentParser(description="Render and persist a synthetic data set.")
  ap.add_argument("--set", required=True, choices=[s for s in SETS if s != "train"])
  ap.add_argument("--data-dir", required=True)
  ap.add_argument("--image-size", type=int, default=128)
  ap.add_argument("--model", default="synthetic", help="synthetic[:V] | sfm:DIR | npz:FILE")
  ap.add_argument("--num", type=int, default=None, help="number of examples (default: the set's)")
  ap.add_argument("--overwrite", action="store_true")
  args = ap.parse_args(argv)
  model = load_model(args.model)
  t0 = time.time()
  path = build_set(model, args.set, args.data_dir, args.image_size, args.num, args.overwrite)
  n = len(tfds_io.read_dataset(path.parent.name, args.data_dir))
  print(f"wrote {n} examples of {args.set} to {path} in {time.time() - t0:.1f} s")


if __name__ == "__main__":
  main()
