"""The procedural face model (`mm.synthetic`) and the Quickstart demo that renders it."""

import cv2
import numpy as np
import pytest

from cprfa_jax import demo
from cprfa_jax.geometry import projection as geo
from cprfa_jax.mm import model as mm
from cprfa_jax.mm import synthetic

MIRROR_3 = np.array([-1.0, 1.0, 1.0])
# iBUG-68 mirror pairs (image-left index, image-right index) and the midline points.
PAIRS = ([(i, 16 - i) for i in range(8)] + [(17 + i, 26 - i) for i in range(5)]
         + [(31, 35), (32, 34), (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),
            (48, 54), (49, 53), (50, 52), (59, 55), (58, 56), (60, 64), (61, 63), (67, 65)])
MIDLINE = [8, 27, 28, 29, 30, 33, 51, 57, 62, 66]


@pytest.fixture(scope="module")
def model():
  return synthetic.synthetic_model()


def _np(m):
  return {f: np.asarray(getattr(m, f)) for f in mm._FIELDS}


def test_deterministic_by_seed(model):
  again, other = _np(synthetic.synthetic_model()), _np(synthetic.synthetic_model(seed=1))
  for f, a in _np(model).items():
    np.testing.assert_array_equal(a, again[f], err_msg=f)
  # The seed draws the identity bases; the mean face and its landmarks are the same.
  assert np.abs(other["id_basis_KxVx3"] - again["id_basis_KxVx3"]).max() > 1e-3
  np.testing.assert_array_equal(other["mean_Vx3"], again["mean_Vx3"])


@pytest.mark.parametrize("requested", [2000, 20000])
def test_vertex_count_follows_request(requested):
  m = synthetic.synthetic_model(requested, num_id=5, num_exp=2)
  assert abs(m.num_vertices - requested) < 0.05 * requested
  assert m.triangles_Tx3.shape[0] > 1.8 * m.num_vertices  # a grid: about two per vertex


def test_field_shapes(model):
  v = model.num_vertices
  expect = {"mean_Vx3": (v, 3), "id_basis_KxVx3": (40, v, 3), "exp_basis_ExVx3": (10, v, 3),
            "id_std_K": (40,), "exp_std_E": (10,), "landmarks_68": (68,), "symmetry_V": (v,),
            "pncc_Vx3": (v, 3), "offset_3": (3,), "unit_scale": ()}
  for f, shp in expect.items():
    assert getattr(model, f).shape == shp, f
  tri = np.asarray(model.triangles_Tx3)
  assert tri.shape[1] == 3 and tri.min() >= 0 and tri.max() < v
  assert model.name == "synthetic"
  small = synthetic.synthetic_model(3000, num_id=7, num_exp=3)
  assert small.id_basis_KxVx3.shape[0] == 7 and small.exp_basis_ExVx3.shape[0] == 3
  with pytest.raises(ValueError, match="expressions"):
    synthetic.synthetic_model(3000, num_exp=len(synthetic.EXPRESSIONS) + 1)


def test_symmetry_is_an_exact_mirror(model):
  sym, mean = np.asarray(model.symmetry_V), np.asarray(model.mean_Vx3)
  np.testing.assert_array_equal(sym[sym], np.arange(model.num_vertices))
  assert np.abs(mean[sym] * MIRROR_3 - mean).max() < 1e-6
  # The triangulation mirrors too, so the normals do.
  n = np.asarray(geo.vertex_normals(model.mean_Vx3, model.triangles_Tx3))
  assert np.abs(n[sym] * MIRROR_3 - n).max() < 1e-4


def test_landmarks_mirror_consistent_and_on_their_side(model):
  lm, sym = np.asarray(model.landmarks_68), np.asarray(model.symmetry_V)
  mean = np.asarray(model.mean_Vx3)
  assert len(set(lm.tolist())) == 68
  for i, j in PAIRS:
    assert sym[lm[i]] == lm[j], (i, j)
    assert mean[lm[i], 0] < 0 < mean[lm[j], 0], (i, j)  # image-left is x < 0
  for i in MIDLINE:
    assert sym[lm[i]] == lm[i], i
  # Order of the iBUG scheme, top to bottom: brows, eyes, nose tip, mouth, chin.
  y = mean[lm, 1]
  assert y[19] > y[37] > y[41] > y[30] > y[33] > y[51] > y[62] > y[66] > y[57] > y[8]
  assert y[8] == y.min() and mean[lm[:17], 0].min() == mean[lm, 0].min()  # contour is widest
  assert mean[lm[36], 0] < mean[lm[39], 0] < 0  # the right eye runs outer -> inner corner


def test_identity_basis_is_orthogonal_and_scaled_by_std(model):
  basis = np.asarray(model.id_basis_KxVx3, np.float64).reshape(model.num_id, -1)
  std = np.asarray(model.id_std_K, np.float64)
  unit = basis / std[:, None]
  gram = unit @ unit.T / float(model.unit_scale) ** 2  # the canonical frame scales by unit
  np.testing.assert_allclose(gram, np.eye(model.num_id), atol=1e-4)
  assert np.all(np.diff(std) <= 0) and std[0] > 5 * std[-1]


def test_identity_basis_is_mostly_symmetric_and_plausible(model):
  sym = np.asarray(model.symmetry_V)
  b = np.asarray(model.id_basis_KxVx3, np.float64)
  mirrored = b[:, sym] * MIRROR_3
  sym_part, anti_part = 0.5 * (b + mirrored), 0.5 * (b - mirrored)
  frac = (anti_part ** 2).sum() / ((sym_part ** 2).sum() + (anti_part ** 2).sum())
  assert 0.005 < frac < 0.15
  # +3 std of the strongest component: visible (> 3 mm somewhere) but not a new head (< 25 mm).
  mm_per_unit = 1.0 / float(model.unit_scale)
  peak = np.linalg.norm(3 * b[0], axis=-1).max() * mm_per_unit
  assert 3.0 < peak < 25.0


def test_expressions_are_localised(model):
  mean, lm = np.asarray(model.mean_Vx3), np.asarray(model.landmarks_68)
  exp = {name: np.linalg.norm(np.asarray(model.exp_basis_ExVx3[i]), axis=-1) / model.unit_scale
         for i, name in enumerate(synthetic.EXPRESSIONS[:model.num_exp])}
  near = lambda i, r: np.linalg.norm(mean - mean[lm[i]], axis=-1) < r
  chin, eyes = near(8, 0.15), near(37, 0.08) | near(44, 0.08)
  mouth = near(62, 0.1) | near(48, 0.1) | near(54, 0.1)
  for name in ("blink", "squint", "brow_raise", "frown"):
    assert exp[name][chin].max() < 0.01 * exp[name].max(), name
  for name in ("jaw_open", "smile", "pucker", "mouth_corner_down", "lip_press"):
    assert exp[name][eyes].max() < 0.01 * exp[name].max(), name
    assert exp[name][mouth].max() > 0.5 * exp[name].max(), name
  for name, e in exp.items():  # at a coefficient of 3, a clear but human-sized change (mm)
    assert 3.0 < 3 * e.max() < 30.0, name
  # Blink at 3 closes the eye: the upper lid reaches the lower one.
  i = synthetic.EXPRESSIONS.index("blink")
  closed = np.asarray(mm.shape(model, np.zeros(1), np.eye(model.num_exp)[i] * 3))
  gap = lambda v: v[lm[37], 1] - v[lm[41], 1]
  assert gap(mean) > 0.04 and abs(gap(closed)) < 0.2 * gap(mean)


def test_mean_face_is_frontal(model):
  mean, lm = np.asarray(model.mean_Vx3), np.asarray(model.landmarks_68)
  assert np.argmax(mean[lm, 2]) == 30  # the nose tip leads
  n = np.asarray(geo.vertex_normals(model.mean_Vx3, model.triangles_Tx3))
  face = ((np.abs(mean[:, 0]) < 0.3) & (mean[:, 1] > mean[lm[8], 1])
          & (mean[:, 1] < mean[lm[19], 1]))
  assert face.sum() > 200 and (n[face, 2] > 0).mean() > 0.9
  # The sides wrap back: the mesh reaches well behind the face.
  assert mean[:, 2].min() < mean[lm[30], 2] - 0.6


def test_yaw_90_shows_one_side(model):
  """Yaw +90 turns the nose to the image's right (the subject turns to their left), so the
  subject's right side (x < 0) faces the camera and the left side (x > 0) is hidden."""
  mean, lm = np.asarray(model.mean_Vx3), np.asarray(model.landmarks_68)
  vis = np.asarray(geo.front_facing(model.mean_Vx3, model.triangles_Tx3,
                                    geo.pose_from_degrees(0, 90, 0)))
  assert vis[mean[:, 0] < -0.2].mean() > 0.95 and vis[mean[:, 0] > 0.2].mean() < 0.05
  assert vis[lm[:8]].all() and not vis[lm[9:17]].any()
  assert vis[lm[36:42]].all() and not vis[lm[42:48]].any()


def test_demo_writes_png_of_expected_size(tmp_path):
  small = synthetic.synthetic_model(2000, num_id=10, num_exp=4)
  path = tmp_path / "small.npz"
  mm.save_npz(small, path)
  out = tmp_path / "demo.png"
  demo.main(["--out", str(out), "--model", str(path), "--size", "48"])
  img = cv2.imread(str(out))
  n_cells = len(demo.demo_cells(small))
  assert img.shape == (48 * -(-n_cells // 7), 48 * 7, 3)
  assert (img < 250).any(axis=-1).mean() > 0.1  # faces were drawn, not just background


def test_render_shaded_frontal_is_symmetric(model):
  pose = demo.fit_pose(model)
  img = demo.render_shaded(model, model.mean_Vx3, pose, 96)
  assert img.shape == (96, 96, 3) and img.dtype == np.uint8
  face = (img < 250).any(-1)
  np.testing.assert_allclose(face.mean(0), face.mean(0)[::-1], atol=0.05)  # silhouette mirrors
