"""data.datasets.ensure_set builds only what is asked for, extends a shorter set, reads a longer
one's prefix, and says what it builds in one line (no tfds "Downloading ..." banner)."""

import functools

import numpy as np
import pytest

from cprfa_jax.data import datasets
from cprfa_jax.mm import synthetic_model

SIZE = 32


@functools.lru_cache(maxsize=1)
def model():
  return synthetic_model(num_vertices=800, num_id=6, num_exp=3)


def same(a, b):
  for k in a:
    np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


def test_any_range_gives_the_same_examples():
  """Chunks aligned to multiples of CHUNK: bit for bit the same examples however they are asked
  for (landmarks included, which a batch of another shape moves by ~1e-6 px)."""
  m = model()
  five = list(datasets.examples(m, "synth-cofw", SIZE, num=5))
  tail = list(datasets.examples(m, "synth-cofw", SIZE, num=2, start=3))
  assert len(five) == 5 and len(tail) == 2
  for a, b in zip(five[3:], tail):
    same(a, b)
  across = list(datasets.examples(m, "synth-cofw", SIZE, num=3, start=datasets.CHUNK - 1))
  assert len(across) == 3   # one from the first chunk, two from the second


def test_ensure_set_builds_extends_and_reads_a_prefix(tmp_path, capsys):
  m = model()
  lines = []
  src = datasets.ensure_set(m, "synth-cofw", tmp_path, SIZE, 3, log=lines.append)
  assert len(src) == 3 and src.metadata["num"] == 3 and not src.metadata["complete"]
  assert lines == [f"building synth-cofw (3 images at {SIZE} px) in {tmp_path} ..."]
  # tfds' own banner ("Downloading and preparing dataset Unknown size ...") is silenced.
  assert "Downloading" not in capsys.readouterr().out
  first = [src[i] for i in range(3)]

  # A larger request extends the set: the 3 built are read back, 2 more rendered.
  lines.clear()
  src = datasets.ensure_set(m, "synth-cofw", tmp_path, SIZE, 5, log=lines.append)
  assert len(src) == 5 and src.metadata["num"] == 5
  assert "3 of them already built" in lines[0]
  for a, b in zip(first, [src[i] for i in range(3)]):
    same(a, b)
  for a, b in zip(datasets.examples(m, "synth-cofw", SIZE, num=5), [src[i] for i in range(5)]):
    same(a, b)

  # A smaller one reads the first examples, builds nothing, and is exactly that long.
  lines.clear()
  src = datasets.ensure_set(m, "synth-cofw", tmp_path, SIZE, 2, log=lines.append)
  assert lines == [] and len(src) == 2
  with pytest.raises(IndexError):
    src[2]
  with pytest.raises(IndexError):
    src.__getitems__([0, 2])


def test_a_set_from_other_settings_is_rebuilt(tmp_path, monkeypatch):
  m = model()
  datasets.ensure_set(m, "synth-cofw", tmp_path, SIZE, 2, log=lambda s: None)
  recipe = datasets.set_metadata
  monkeypatch.setattr(datasets, "set_metadata", lambda *a: {**recipe(*a), "chunk": 32})
  lines = []
  src = datasets.ensure_set(m, "synth-cofw", tmp_path, SIZE, 2, log=lines.append)
  assert "rebuilding" in lines[0] and len(src) == 2 and src.metadata["chunk"] == 32
