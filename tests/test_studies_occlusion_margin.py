"""studies.occlusion_margin: the occluded share read back from a re-render of the true face, the
per-bin margins against a naive loop, and the CSV reader's errors."""

import hypothesis
from hypothesis import strategies as st
import numpy as np
import jax.numpy as jnp
import pytest

from cprfa_jax import mm, render
from cprfa_jax.data import datasets
from cprfa_jax.studies import occlusion_margin as om


@pytest.fixture(scope="module")
def model_and_examples():
  model = mm.load_model("synthetic:2000")
  return model, list(datasets.examples(model, "synth-cofw", 32, num=3))


def test_occluded_share_is_what_was_taken_from_the_rendered_face(model_and_examples):
  model, exs = model_and_examples
  e = dict(exs[0])
  full = np.asarray(render.render_batch(
      model, om.shape(model, jnp.asarray(e["alpha_id"]), jnp.asarray(e["alpha_exp"]))[None],
      e["pose"][None], e["mask"].shape).mask[0])
  assert not (e["mask"] & ~full).any()       # the re-render is the stored face's
  e["mask"] = full
  assert om.occluded_share(model, [e])[0] == 0.0
  # Take a known set of the face's pixels away: the share is exactly their count over the face's.
  face = np.flatnonzero(full)
  cut = full.reshape(-1).copy()
  cut[face[::3]] = False
  e["mask"] = cut.reshape(full.shape)
  np.testing.assert_allclose(om.occluded_share(model, [e])[0], len(face[::3]) / len(face),
                             rtol=1e-6)
  # Batched as one: the same shares as one by one, in order.
  np.testing.assert_allclose(om.occluded_share(model, exs + [e], batch=2),
                             [om.occluded_share(model, [x])[0] for x in exs + [e]], rtol=1e-6)


def _naive(a, b, hidden, edges):
  out = []
  for k in range(len(edges) - 1):
    idx = [i for i, h in enumerate(hidden)
           if edges[k] <= h and (h < edges[k + 1] or (k == len(edges) - 2 and h <= edges[k + 1]))]
    out.append((len(idx), None if not idx else sum(b[i] - a[i] for i in idx) / len(idx)))
  return out


@hypothesis.given(data=st.data(), n=st.integers(1, 40))
@hypothesis.settings(max_examples=30, deadline=None)
def test_margin_by_bin_matches_a_naive_loop_and_sums_to_the_whole(data, n):
  floats = st.floats(0, 1, allow_nan=False, width=32)
  a = np.array(data.draw(st.lists(floats, min_size=n, max_size=n)))
  b = np.array(data.draw(st.lists(floats, min_size=n, max_size=n)))
  hidden = np.array(data.draw(st.lists(floats, min_size=n, max_size=n)))
  edges = [0.0, 0.05, 0.25, 1.0]
  rows = om.margin_by_bin(a, b, hidden, edges)
  for r, (count, margin) in zip(rows, _naive(a, b, hidden, edges)):
    assert r["n"] == count
    if count:
      np.testing.assert_allclose(r["margin"], margin, atol=1e-12)
    else:
      assert r["margin"] is None and r["a"] is None
  # Every image is in one bin (the last is closed): the count-weighted margins are the whole's.
  assert sum(r["n"] for r in rows) == n
  whole = sum(r["n"] * r["margin"] for r in rows if r["n"]) / n
  np.testing.assert_allclose(whole, b.mean() - a.mean(), atol=1e-12)


def test_read_per_image_names_the_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="per_image_x.csv does not exist: run evaluate.py"):
    om.read_per_image(tmp_path / "per_image_x.csv")
  p = tmp_path / "per_image_y.csv"
  p.write_text("index,nme[A],nme[B]\n0,0.1,0.2\n3,0.3,0.25\n")
  per = om.read_per_image(p)
  np.testing.assert_array_equal(per["index"], [0, 3])
  np.testing.assert_allclose(per["nme[B]"] - per["nme[A]"], [0.1, -0.05])
