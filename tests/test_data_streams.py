"""data.streams: one data path for every stage, on lists and on a tfds fixture set."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from configs import tiny
from cprfa_jax import mm, workdirs
from cprfa_jax.data import datasets, schema, streams, tfds_io
from cprfa_jax.geometry.projection import project, to_pixels
from cprfa_jax.mm.model import shape
from cprfa_jax.train.stages import dafi, landmarks, regressors

SIZE = 32
NUM = 24


def _examples(n):
  """Examples whose content says which they are: image filled with the index."""
  return [{"image": np.full((4, 4, 3), i, np.uint8), "index": np.int32(i),
           "landmarks": np.full((68, 2), i, np.float32)} for i in range(n)]


def _take(batches, start, count):
  it = batches(start)
  return [next(it) for _ in range(count)]


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 400), frac=st.floats(0.001, 0.5))
def test_reference_is_a_fixed_held_out_subset(n, frac):
  k = min(max(1, int(frac * n)), n - 1)
  ref = streams.reference_indices(n, k)
  train = streams.training_indices(n, k)
  assert len(ref) == k and len(np.unique(ref)) == k
  # Disjoint and together the whole split: no reference image is ever trained on.
  np.testing.assert_array_equal(np.sort(np.concatenate([ref, train])), np.arange(n))
  np.testing.assert_array_equal(ref, streams.reference_indices(n, k))   # no seed: stable


def test_reference_count_errors_name_the_flag():
  for k in (0, 10):
    with pytest.raises(ValueError, match="num_reference"):
      streams.reference_indices(10, k)


def test_every_epoch_is_a_permutation_and_batches_resume_exactly():
  src = _examples(10)
  batches = streams.grain_batches(src, 2, seed=3, keys=("index",), augmented=False)
  seen = np.concatenate([b["index"] for b in _take(batches, 0, 15)])   # 3 epochs of 10
  epochs = seen.reshape(3, 10)
  for e in epochs:
    np.testing.assert_array_equal(np.sort(e), np.arange(10))
  assert not (epochs[0] == epochs[1]).all()   # a fresh order per epoch
  # batches(start) yields batch start + 1, ...: exactly the uninterrupted run's.
  for start in (1, 4, 7):
    later = _take(batches, start, 3)
    np.testing.assert_array_equal(np.concatenate([b["index"] for b in later]),
                                  seen[2 * start:2 * start + 6])


@pytest.mark.parametrize("n", [2, 4])
def test_processes_share_each_global_batch_in_order(n):
  """Process p's batch k is its slice of the one-process global batch k: the union over
  processes is that batch, in the same order, and no example is read twice."""
  src, b = _examples(37), 3
  one = _take(streams.grain_batches(src, b * n, seed=5, keys=("index",), augmented=False), 2, 4)
  per = [_take(streams.grain_batches(src, b, seed=5, keys=("index",), augmented=False,
                                     process=(p, n)), 2, 4) for p in range(n)]
  for k in range(4):
    np.testing.assert_array_equal(np.concatenate([per[p][k]["index"] for p in range(n)]),
                                  one[k]["index"])


def test_only_the_stage_keys_are_stacked():
  batch, = _take(streams.grain_batches(_examples(8), 4, 0, ("image", "landmarks"), augmented=False),
                 0, 1)
  assert set(batch) == {"image", "landmarks"} and batch["landmarks"].shape == (4, 68, 2)


def test_too_small_a_set_is_a_clear_error():
  with pytest.raises(ValueError, match="fewer than one global batch"):
    streams.grain_batches(_examples(3), 4, 0, ("index",), augmented=False)


@pytest.fixture(scope="module")
def model3d():
  return mm.load_model("synthetic:2000")


@pytest.fixture(scope="module")
def train_set(tmp_path_factory, model3d):
  """A tfds `train` split of rendered examples, in the example schema (what data.real writes)."""
  data_dir = tmp_path_factory.mktemp("tfds")
  exs = list(datasets.examples(model3d, "reference", SIZE, NUM))
  meta = {"model": model3d.name, "num_vertices": model3d.num_vertices,
          "num_id": model3d.num_id, "num_exp": model3d.num_exp, "image_size": SIZE}
  tfds_io.write_dataset("fixture_train", exs, data_dir, schema.feature_spec(
      (SIZE, SIZE), model3d.num_id, model3d.num_exp), split="train", metadata=meta)
  return data_dir, exs


def _config(data_dir, batch_size=4, num_reference=4, augmented=False):
  c = tiny.get_config()
  c.data.train = "tfds:fixture_train"
  c.data.data_dir = str(data_dir)
  c.data.num_reference = num_reference
  c.data.augment = augmented
  c.unet.train.batch_size = batch_size
  return workdirs.stage_config(c, "dafi")


def _digest(image):
  return image.tobytes()


def test_every_stage_trains_on_the_training_examples_only(train_set, model3d):
  data_dir, exs = train_set
  config = _config(data_dir)
  ref = set(streams.reference_indices(NUM, 4))
  by_image = {_digest(e["image"]): i for i, e in enumerate(exs)}
  for keys, batches in [(dafi.KEYS, dafi.train_batches(config, model3d)),
                        (landmarks.KEYS, landmarks.train_batches(config, model3d)),
                        (regressors.STREAM_KEYS, streams.batches_fn(config, model3d, regressors.STREAM_KEYS))]:
    got = [by_image[_digest(im)] for b in _take(batches, 0, 10) for im in b["image"]]
    assert set(batches(0).__next__()) == set(keys)
    # 10 batches of 4 = 40 > 20 training examples: every training example, no reference one.
    assert set(got) == set(range(NUM)) - ref
  # The reference set is those held-out examples, for §2.2's vertex selection.
  refset = streams.reference_set(config, model3d)
  assert sorted(by_image[_digest(refset[i]["image"])] for i in range(len(refset))) == sorted(ref)


def test_augmentation_is_one_similarity_per_example_and_resumes_exactly(train_set, model3d):
  data_dir, exs = train_set
  config = _config(data_dir, augmented=True)
  batches = dafi.train_batches(config, model3d)
  first = _take(batches, 0, 3)
  again = _take(batches, 2, 1)[0]
  for key in dafi.KEYS:
    np.testing.assert_array_equal(first[2][key], again[key])
  plain = _take(dafi.train_batches(_config(data_dir), model3d), 0, 1)[0]
  assert not np.array_equal(first[0]["image"], plain["image"])
  # Pose and landmarks moved with the image: the augmented example's pose still projects its
  # model landmarks onto its landmarks (data.augment's invariant, end to end through Grain).
  fit_b = _take(streams.batches_fn(_config(data_dir, augmented=True), model3d,
                                   ("image", "landmarks", "pose", "alpha_id", "alpha_exp")), 0, 1)[0]
  for i in range(len(fit_b["image"])):
    v = shape(model3d, fit_b["alpha_id"][i], fit_b["alpha_exp"][i])[model3d.landmarks_68]
    px = np.asarray(to_pixels(project(v, fit_b["pose"][i]), (SIZE, SIZE)))
    np.testing.assert_allclose(px, fit_b["landmarks"][i], atol=1e-3 * SIZE)


def test_a_set_built_for_another_model_or_size_is_refused(train_set, model3d):
  data_dir, _ = train_set
  with pytest.raises(ValueError, match=rf"num_vertices={model3d.num_vertices}.*num_vertices=6083"):
    streams.batches_fn(_config(data_dir), mm.load_model("synthetic"), dafi.KEYS)
  config = _config(data_dir)
  config.data.image_size = 64
  with pytest.raises(ValueError, match=r"image_size=32.*image_size=64"):
    dafi.train_batches(config, model3d)


def test_bad_data_train_is_named():
  c = workdirs.stage_config(tiny.get_config(), "dafi")
  c.data.train = "300wlp"
  with pytest.raises(ValueError, match="data.train='300wlp'"):
    dafi.validate(c)


WORKERS_SCRIPT = """
import sys
import numpy as np
from absl import flags
from cprfa_jax.data import streams

def main():
  flags.FLAGS.mark_as_parsed()   # as under train.py's app.run: Grain's workers read its flags
  src = [{"index": np.int32(i)} for i in range(20)]
  threads = streams.grain_batches(src, 2, 3, ("index",), augmented=False)(3)
  workers = streams.grain_batches(src, 2, 3, ("index",), augmented=False, workers=1)(3)
  for _ in range(6):
    a, b = next(threads)["index"], next(workers)["index"]
    assert (np.asarray(a) == np.asarray(b)).all(), (a, b)
  print("same")

if __name__ == "__main__":   # worker processes are spawned: the main module must be importable
  main()
"""


def test_worker_processes_give_the_batches_threads_give(tmp_path):
  """`data.loader_workers` (Grain's mp_prefetch) reads the same batches, in the same order."""
  script = tmp_path / "workers.py"
  script.write_text(WORKERS_SCRIPT)
  root = pathlib.Path(__file__).resolve().parents[1]
  out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                       cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
  assert out.returncode == 0 and out.stdout.strip().endswith("same"), out.stderr[-2000:]
