"""Persist a finite sequence of schema examples as a tfds dataset, TF-free, and read it back.

Writing goes through a `tfds.core.GeneratorBasedBuilder` of our own, made per call, with
`file_format="array_record"`; reading goes through `tfds.data_source` (random access, `len`,
the write order). Every feature is a `tfds.features.Tensor` with `encoding="bytes"` (or
"zlib"): tfds 4.9.10 serialises and parses those with NumPy only, whereas `features.Image`
needs TensorFlow to encode, so images are stored as raw uint8 tensors.

On disk (the usual tfds layout): `DATA_DIR/NAME/VERSION/` with `NAME-SPLIT.array_record-*`
shards, `dataset_info.json`, `features.json` and `metadata.json` (our per-dataset facts:
model name, image size, K, E, skipped files...).
"""

from __future__ import annotations

import itertools
import os
import pathlib
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

DEFAULT_VERSION = "1.0.0"
tfds.disable_progress_bar()  # its bars would bury the training and evaluation logs
BUILD_HINT = ("build it first: see docs/datasets.md (e.g. `python -m cprfa_jax.data.real "
              "--dataset aflw2000 --root ... --bfm ... --out DATA_DIR`)")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class DatasetNotBuiltError(FileNotFoundError):
  """The dataset directory does not exist (or lacks the split): it has to be built first."""


def _features(spec, encoding: str):
  """{key: (shape, dtype)} -> FeaturesDict of fixed-shape Tensors."""
  return tfds.features.FeaturesDict({
      key: tfds.features.Tensor(shape=tuple(shp), dtype=np.dtype(dtype), encoding=encoding)
      for key, (shp, dtype) in spec.items()})


def _jsonable(x):
  """Metadata goes to metadata.json: NumPy scalars and arrays become plain Python values."""
  if isinstance(x, Mapping):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, (np.ndarray, np.generic)):
    return x.tolist()
  return x


def _checked(examples: Iterable[Mapping[str, Any]], spec, split: str):
  """Yields (index, example) with every key of `spec` as an array of the right shape/dtype.

  tfds' own check names neither the example nor the key (and silently casts Python scalars
  and lists); a schema mismatch is a bug upstream, so say where it is. Extra keys are dropped.
  """
  for i, ex in enumerate(examples):
    out = {}
    for key, (shp, dtype) in spec.items():
      if key not in ex:
        raise ValueError(f"split {split!r} example {i}: missing key {key!r}")
      a = np.asarray(ex[key])
      if a.shape != tuple(shp) or a.dtype != np.dtype(dtype):
        raise ValueError(f"split {split!r} example {i}: {key} is {a.dtype}{list(a.shape)}, "
                         f"expected {np.dtype(dtype)}{list(shp)}")
      out[key] = a
    yield i, out


def _make_builder(name, version, spec, encoding, split_gens, description, data_dir):
  """A GeneratorBasedBuilder subclass for this one call, kept out of the tfds registry (so
  names never collide across calls and `tfds.data_source` later finds the data by its files).
  `split_gens`: {split: iterator of (key, example)}."""

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self, description=description, features=_features(spec, encoding),
        # Keep the write order: index i of the source is the i-th example written.
        disable_shuffling=True, metadata=tfds.core.MetadataDict())

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing is downloaded
    return split_gens

  def _generate_examples(self):  # abstract in tfds; `_split_generators` returns generators
    raise NotImplementedError

  def _quiet(self):
    pass

  with tfds.core.registered.skip_registration():
    cls = type("CprfaArrayRecordBuilder", (tfds.core.GeneratorBasedBuilder,), {
        "name": name, "VERSION": tfds.core.Version(version), "_info": _info,
        "_split_generators": _split_generators, "_generate_examples": _generate_examples,
        # tfds prints "Downloading and preparing dataset Unknown size ... to .incomplete-*"
        # and "... downloaded and prepared": nothing is downloaded and the scratch path is
        # not where the data ends up; callers say what they build (`datasets.ensure_set`).
        "_log_download_bytes": _quiet, "_log_download_done": _quiet,
        "__module__": __name__})
  return cls(data_dir=os.fspath(data_dir), file_format="array_record")


def write_dataset(name: str, examples, data_dir, spec, *, split: str = "test",
                  version: str = DEFAULT_VERSION, metadata: Mapping[str, Any] | None = None,
                  encoding: str = "bytes", description: str = "", overwrite: bool = False
                  ) -> pathlib.Path:
  """Writes examples to `data_dir/name/version/` as array_record; returns that directory.

  examples: an iterable of dicts with (at least) the keys of `spec` ({key: (shape, dtype)},
    e.g. `schema.feature_spec`), or a mapping {split: iterable} to write several splits.
  metadata: JSON-able facts kept in metadata.json. It is read after the last example, so a
    generator may update the same dict (e.g. skip counts) while it runs.
  encoding: "bytes" (raw, fastest) or "zlib" (smaller: DAFIs and masks are mostly zeros).
  An existing dataset is an error unless `overwrite`. A failed write leaves no dataset and,
  with `overwrite`, the old one intact.
  """
  if not _NAME_RE.match(name):
    raise ValueError(f"dataset name {name!r}: use lower case letters, digits and _ "
                     "(a tfds name), starting with a letter")
  if name in tfds.list_builders(with_community_datasets=False):
    # tfds.data_source would resolve the name to the stock builder, which needs TensorFlow.
    raise ValueError(f"dataset name {name!r} is a stock tfds builder; choose another name "
                     f"(e.g. 'cprfa_{name}')")
  if encoding not in ("bytes", "zlib"):
    raise ValueError(f"encoding must be 'bytes' or 'zlib', got {encoding!r}")
  data_dir = pathlib.Path(data_dir).expanduser()
  out_dir = data_dir / name / version
  if out_dir.exists() and not overwrite:  # before any example is made: they may be slow
    raise FileExistsError(f"{out_dir} already exists; delete it or pass overwrite=True "
                          "(--overwrite) to rebuild it")
  splits = dict(examples) if isinstance(examples, Mapping) else {split: examples}
  # tfds reports an empty split only after a long traceback: check it up front.
  for s, it in splits.items():
    it = iter(it)
    first = next(it, None)
    if first is None:
      raise ValueError(f"dataset {name!r} split {s!r}: no examples to write")
    splits[s] = itertools.chain([first], it)

  metadata = {} if metadata is None else metadata
  builder = None

  # Metadata is read after the examples: tfds writes dataset_info (with metadata.json) only
  # once every split is generated, and the end of each split's generator is the hook.
  def _then_metadata(gen):
    yield from gen
    builder.info.metadata.update(_jsonable(dict(metadata)))

  split_gens = {s: _then_metadata(_checked(it, spec, s)) for s, it in splits.items()}
  # Build in a scratch data_dir beside the target and move the version directory into place
  # at the end: a failed (over)write then leaves the old dataset as it was. tfds' own
  # overwrite mode would delete it first.
  data_dir.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=data_dir, prefix=".incomplete-") as scratch:
    builder = _make_builder(name, version, spec, encoding, split_gens, description, scratch)
    builder.download_and_prepare(
        download_dir=os.path.join(scratch, "downloads"),
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    if out_dir.exists():
      shutil.rmtree(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    (pathlib.Path(scratch) / name / version).rename(out_dir)
  return out_dir


class ExampleSource(Sequence):
  """A random-access, deterministic view of one split: `len`, `src[i]` -> dict of arrays.

  `metadata` holds the facts written with the dataset, `spec` the {key: (shape, dtype)}.
  `__getitems__` reads a batch of indices in one call (what grain and PyTorch loaders use).
  """

  def __init__(self, source, metadata, spec, path, limit: int | None = None):
    self._source, self.metadata, self.spec, self.path = source, metadata, spec, path
    self._len = len(source) if limit is None else min(int(limit), len(source))

  def __len__(self) -> int:
    return self._len

  def head(self, n: int) -> "ExampleSource":
    """The first n examples (all of them if there are fewer), as a view."""
    return ExampleSource(self._source, self.metadata, self.spec, self.path, min(n, len(self)))

  def __getitem__(self, i):
    if isinstance(i, slice):
      return [self[j] for j in range(*i.indices(len(self)))]
    n = len(self)
    j = i + n if i < 0 else i
    if not 0 <= j < n:
      raise IndexError(f"index {i} out of range for {n} examples of {self.path}")
    return self._source[j]

  def __getitems__(self, indices):
    indices = list(indices)
    bad = [i for i in indices if not 0 <= i < len(self)]
    if bad:
      raise IndexError(f"indices {bad[:5]} out of range for {len(self)} examples of {self.path}")
    return self._source.__getitems__(indices)

  def __repr__(self):
    return f"ExampleSource({self.path}, {len(self)} examples)"


def read_dataset(name: str, data_dir, split: str = "test", version: str | None = None
                 ) -> ExampleSource:
  """Opens `data_dir/name/[version|latest]` written by `write_dataset` through
  `tfds.data_source`. A missing directory or split raises `DatasetNotBuiltError`."""
  data_dir = pathlib.Path(data_dir).expanduser()
  root = data_dir / name
  versions = sorted((p.name for p in root.glob("*.*.*") if (p / "dataset_info.json").exists()),
                    key=lambda v: tuple(int(x) for x in v.split(".") if x.isdigit()))
  if version is None and versions:
    version = versions[-1]
  if version is None or version not in versions:
    found = f" (versions found: {versions})" if versions else ""
    raise DatasetNotBuiltError(f"no dataset {name!r} version {version or 'any'} under "
                               f"{data_dir}{found}; {BUILD_HINT}")
  path = root / version
  builder = tfds.builder_from_directory(os.fspath(path))
  if split not in builder.info.splits:
    raise DatasetNotBuiltError(f"{path} has splits {list(builder.info.splits)}, not {split!r}; "
                               f"{BUILD_HINT}")
  source = tfds.data_source(f"{name}:{version}", data_dir=os.fspath(data_dir), split=split)
  spec = {k: (tuple(f.shape), np.dtype(f.np_dtype))
          for k, f in builder.info.features.items()}
  return ExampleSource(source, dict(builder.info.metadata or {}), spec, path)


# metadata.json key -> what of the model (or config) it must equal. Sets written before a key
# existed lack it and are not checked on it; a key that is present and differs is an error.
_MODEL_FACTS = {"model": lambda m: m.name, "num_vertices": lambda m: m.num_vertices,
                "num_id": lambda m: m.num_id, "num_exp": lambda m: m.num_exp}


def check_model(source: ExampleSource, model3d, image_size: int, what: str) -> None:
  """Raises ValueError (one line, naming both) if a set's metadata or features disagree with the
  config's model or image size: its alpha, DAFIs and landmarks would mean something else.
  `what` names the set in the message, e.g. "--config.data.train=tfds:cprfa_300wlp_256"."""
  meta, spec = source.metadata, source.spec
  found = {k: meta[k] for k in _MODEL_FACTS if k in meta}
  want = {k: f(model3d) for k, f in _MODEL_FACTS.items() if k in found}
  # The features themselves carry K, E and the image size, whatever the metadata says.
  if "alpha_id" in spec:
    found["num_id"], want["num_id"] = spec["alpha_id"][0][0], model3d.num_id
  if "alpha_exp" in spec:
    found["num_exp"], want["num_exp"] = spec["alpha_exp"][0][0], model3d.num_exp
  if "image" in spec:
    found["image_size"], want["image_size"] = spec["image"][0][0], image_size
  bad = sorted(k for k in want if found[k] != want[k])
  if bad:
    raise ValueError(
        f"{what} ({source.path}) was built for " + ", ".join(f"{k}={found[k]!r}" for k in bad) +
        " but the config has " + ", ".join(f"{k}={want[k]!r}" for k in bad) +
        ": rebuild the set with this model and --image-size, or set --config.model / "
        "--config.data.image_size to match it")
