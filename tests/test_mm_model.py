"""mm.model: canonical frame, Eq. 1, npz round trip and the errors users see."""

import numpy as np
import pytest

from cprfa_jax.mm.model import (ModelFormatError, build_model, load_npz, save_npz, shape)

V, K, E = 120, 7, 4


def _raw_arrays(seed=0):
  """A random mesh in arbitrary raw units (not centred), with 68 distinct landmarks."""
  rng = np.random.default_rng(seed)
  mean_Vx3 = rng.normal(size=(V, 3)) * [40.0, 50.0, 20.0] + [300.0, -20.0, 7.0]
  id_KxVx3 = rng.normal(size=(K, V, 3))
  exp_ExVx3 = rng.normal(size=(E, V, 3))
  tri_Tx3 = np.stack([rng.permutation(V)[:3] for _ in range(200)])
  lm_68 = rng.permutation(V)[:68]
  return mean_Vx3, id_KxVx3, exp_ExVx3, tri_Tx3, lm_68


def _model(seed=0, **kw):
  return build_model(*_raw_arrays(seed), id_std_K=np.arange(1.0, K + 1),
                     exp_std_E=np.full(E, 0.5), name="toy", **kw)


def test_canonical_frame_and_eq1():
  mean, id_b, exp_b, _, lm = _raw_arrays()
  m = _model()
  x = np.asarray(m.mean_Vx3)
  np.testing.assert_allclose(x[lm].mean(0), 0.0, atol=1e-5)
  np.testing.assert_allclose(np.ptp(x[lm, 0]), 1.0, rtol=1e-5)
  a, e = np.linspace(-1, 1, K), np.linspace(1, -1, E)
  raw = mean + np.einsum("k,kvd->vd", a, id_b) + np.einsum("e,evd->vd", e, exp_b)
  want = float(m.unit_scale) * (raw - np.asarray(m.offset_3))
  np.testing.assert_allclose(np.asarray(shape(m, a, e)), want, atol=1e-4)
  # Fewer coefficients than components: the rest are zero.
  np.testing.assert_allclose(np.asarray(shape(m, a[:2], e[:1])),
                             float(m.unit_scale) * (mean + np.einsum("k,kvd->vd", a[:2], id_b[:2])
                                                    + e[0] * exp_b[0] - np.asarray(m.offset_3)),
                             atol=1e-4)


def test_npz_round_trip(tmp_path):
  m = _model()
  save_npz(m, tmp_path / "toy.npz")
  back = load_npz(tmp_path / "toy.npz")
  assert back.name == "toy"
  for f in m.__dataclass_fields__:
    if f != "name":
      a, b = np.asarray(getattr(m, f)), np.asarray(getattr(back, f))
      assert a.dtype == b.dtype and a.shape == b.shape, f
      np.testing.assert_array_equal(a, b, err_msg=f)


def test_load_npz_errors_name_the_file(tmp_path):
  missing = tmp_path / "nothere.npz"
  with pytest.raises(ModelFormatError, match="nothere.npz"):
    load_npz(missing)
  text = tmp_path / "notes.npz"
  text.write_text("this is not a zip archive\n")
  with pytest.raises(ModelFormatError, match="notes.npz.*not a readable"):
    load_npz(text)
  partial = tmp_path / "partial.npz"
  np.savez(partial, mean_Vx3=np.zeros((V, 3), np.float32))
  with pytest.raises(ModelFormatError, match="partial.npz.*missing fields"):
    load_npz(partial)
  # All fields present but one has the wrong shape.
  m = _model()
  fields = {f: np.asarray(getattr(m, f)) for f in m.__dataclass_fields__ if f != "name"}
  fields["landmarks_68"] = fields["landmarks_68"][:60]
  bad = tmp_path / "bad.npz"
  np.savez(bad, name=np.asarray("toy"), **fields)
  with pytest.raises(ModelFormatError, match="bad.npz.*landmarks_68"):
    load_npz(bad)


@pytest.mark.parametrize("which,match", [
    ("mean", "mean shape"),
    ("id", "identity basis"),
    ("exp", "expression basis"),
    ("tri_range", "triangles"),
    ("tri_shape", "triangles"),
    ("lm_count", "68 landmark"),
    ("lm_range", "68 landmark"),
    ("lm_flat", "x-extent"),
    ("id_std", "identity std"),
    ("exp_std", "expression std"),
    ("symmetry", "symmetry map"),
])
def test_build_model_validation(which, match):
  mean, id_b, exp_b, tri, lm = _raw_arrays()
  kw = {}
  if which == "mean":
    mean = mean[:, :2]
  elif which == "id":
    id_b = id_b[:, :-1]
  elif which == "exp":
    exp_b = exp_b[0]
  elif which == "tri_range":
    tri = tri.copy()
    tri[0, 0] = V
  elif which == "tri_shape":
    tri = tri[:, :2]
  elif which == "lm_count":
    lm = lm[:67]
  elif which == "lm_range":
    lm = lm.copy()
    lm[5] = -1
  elif which == "lm_flat":
    mean = mean.copy()
    mean[:, 0] = 3.0
  elif which == "id_std":
    kw["id_std_K"] = np.ones(K + 1)
  elif which == "exp_std":
    kw["exp_std_E"] = np.ones((E, 2))
  elif which == "symmetry":
    kw["symmetry_V"] = np.zeros(V - 1, int)
  with pytest.raises(ModelFormatError, match=f"my-source: .*{match}"):
    build_model(mean, id_b, exp_b, tri, lm, source="my-source", **kw)


def test_default_symmetry_mirrors_in_x():
  mean, id_b, exp_b, tri, lm = _raw_arrays()
  half = mean[: V // 2]
  mean = np.concatenate([half, half * [-1, 1, 1]])  # exactly symmetric about x = 0
  lm = np.concatenate([np.arange(34), np.arange(34) + V // 2])
  m = build_model(mean, id_b, exp_b, tri, lm)
  np.testing.assert_array_equal(np.asarray(m.symmetry_V),
                                np.concatenate([np.arange(V // 2) + V // 2, np.arange(V // 2)]))
