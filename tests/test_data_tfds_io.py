"""data.tfds_io: schema examples -> tfds array_record -> `tfds.data_source`, without TF."""

import json
import sys

import numpy as np
import pytest

from cprfa_jax.data import schema, tfds_io

HW, K, E = (16, 12), 5, 3
SPEC = schema.feature_spec(HW, K, E)


def _examples(n, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n):
    ex = {}
    for key, (shp, dtype) in SPEC.items():
      if dtype == np.bool_:
        ex[key] = rng.random(shp) > 0.5
      elif dtype == np.uint8:
        ex[key] = rng.integers(0, 256, shp).astype(np.uint8)
      else:
        ex[key] = rng.normal(size=shp).astype(dtype)
    ex["yaw"] = np.float32(10.0 * i)  # tells the order apart
    out.append(ex)
  return out


@pytest.mark.parametrize("encoding", ["bytes", "zlib"])
def test_round_trip_is_exact_and_ordered(tmp_path, encoding):
  exs = _examples(7)
  path = tfds_io.write_dataset("cprfa_toy", iter(exs), tmp_path, SPEC, metadata={"K": K},
                               encoding=encoding)
  assert path == tmp_path / "cprfa_toy" / "1.0.0"
  src = tfds_io.read_dataset("cprfa_toy", tmp_path)
  assert len(src) == 7
  assert src.spec == {k: (tuple(s), np.dtype(d)) for k, (s, d) in SPEC.items()}
  for i in [0, 3, 6, 3]:  # random access, repeatable
    got = src[i]
    assert set(got) == set(SPEC)
    for key, (shp, dtype) in SPEC.items():
      a = np.asarray(got[key])
      assert a.shape == shp and a.dtype == np.dtype(dtype), key
      np.testing.assert_array_equal(a, exs[i][key])
  assert float(src[-1]["yaw"]) == 60.0
  batch = src.__getitems__([5, 1])
  assert [float(b["yaw"]) for b in batch] == [50.0, 10.0]
  # TensorFlow is never imported, neither to write nor to read.
  assert "tensorflow" not in sys.modules


def test_metadata_is_read_after_the_last_example(tmp_path):
  meta = {"model": "bfm_3ddfa", "K": np.int64(K), "image_size": HW}

  def gen():
    yield from _examples(3)
    meta["skipped"] = ["AFW/AFW_1_0"]  # filled in by a reader while it is consumed

  tfds_io.write_dataset("cprfa_meta", gen(), tmp_path, SPEC, metadata=meta)
  src = tfds_io.read_dataset("cprfa_meta", tmp_path)
  assert src.metadata == {"model": "bfm_3ddfa", "K": K, "image_size": list(HW),
                          "skipped": ["AFW/AFW_1_0"]}
  on_disk = json.loads((tmp_path / "cprfa_meta" / "1.0.0" / "metadata.json").read_text())
  assert on_disk == src.metadata


def test_several_splits(tmp_path):
  tfds_io.write_dataset("cprfa_splits", {"train": _examples(4), "test": _examples(2, seed=1)},
                        tmp_path, SPEC)
  assert len(tfds_io.read_dataset("cprfa_splits", tmp_path, "train")) == 4
  test = tfds_io.read_dataset("cprfa_splits", tmp_path, "test")
  np.testing.assert_array_equal(test[1]["image"], _examples(2, seed=1)[1]["image"])


def test_missing_dataset_or_split_says_how_to_build_it(tmp_path):
  with pytest.raises(tfds_io.DatasetNotBuiltError, match=r"cprfa_absent.*cprfa_jax\.data\.real"):
    tfds_io.read_dataset("cprfa_absent", tmp_path)
  tfds_io.write_dataset("cprfa_one", _examples(1), tmp_path, SPEC)
  with pytest.raises(tfds_io.DatasetNotBuiltError, match=r"splits \['test'\], not 'train'"):
    tfds_io.read_dataset("cprfa_one", tmp_path, "train")
  with pytest.raises(tfds_io.DatasetNotBuiltError, match=r"versions found: \['1.0.0'\]"):
    tfds_io.read_dataset("cprfa_one", tmp_path, version="2.0.0")


def test_existing_dataset_needs_overwrite(tmp_path):
  tfds_io.write_dataset("cprfa_twice", _examples(2), tmp_path, SPEC)
  with pytest.raises(FileExistsError, match="overwrite"):
    tfds_io.write_dataset("cprfa_twice", _examples(3), tmp_path, SPEC)
  tfds_io.write_dataset("cprfa_twice", _examples(3), tmp_path, SPEC, overwrite=True)
  assert len(tfds_io.read_dataset("cprfa_twice", tmp_path)) == 3


def test_bad_examples_and_names_are_refused(tmp_path):
  bad = _examples(2)
  bad[1]["pose"] = bad[1]["pose"].astype(np.float64)  # tfds' error would name no key
  with pytest.raises(ValueError, match=r"example 1: pose is float64\[6\], expected float32"):
    tfds_io.write_dataset("cprfa_bad", bad, tmp_path, SPEC)
  assert not (tmp_path / "cprfa_bad" / "1.0.0").exists()  # nothing half-written is left
  with pytest.raises(ValueError, match="no examples"):
    tfds_io.write_dataset("cprfa_empty", [], tmp_path, SPEC)
  with pytest.raises(ValueError, match="stock tfds builder"):
    tfds_io.write_dataset("aflw2k3d", _examples(1), tmp_path, SPEC)
  with pytest.raises(ValueError, match="lower case"):
    tfds_io.write_dataset("AFLW-2000", _examples(1), tmp_path, SPEC)


def test_failed_overwrite_keeps_the_old_dataset(tmp_path):
  tfds_io.write_dataset("cprfa_keep", _examples(2), tmp_path, SPEC)

  def failing():
    yield from _examples(3)
    raise RuntimeError("reader crashed")

  with pytest.raises(RuntimeError, match="reader crashed"):
    tfds_io.write_dataset("cprfa_keep", failing(), tmp_path, SPEC, overwrite=True)
  assert len(tfds_io.read_dataset("cprfa_keep", tmp_path)) == 2
