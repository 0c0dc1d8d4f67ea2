"""mm.sfm against the real Surrey Face Model files in ../shared (skipped when absent)."""

import shutil
import struct

import numpy as np
import pytest

from conftest import SFM_DIR, requires_sfm
from cprfa_jax.geometry.projection import project, to_pixels
from cprfa_jax.mm.model import ModelFormatError, load_npz, save_npz
from cprfa_jax.mm.sfm import EXPRESSION_FILE, LANDMARK_FILE, SHAPE_FILE, load_sfm

pytestmark = requires_sfm


@pytest.fixture(scope="module")
def sfm():
  return load_sfm(SFM_DIR)


def _copy_sfm(tmp_path):
  """A writable copy of the SFM folder, to corrupt."""
  dst = tmp_path / "sfm"
  shutil.copytree(SFM_DIR, dst)
  for f in dst.iterdir():
    f.chmod(0o644)  # the shared copy is read-only
  return dst


@pytest.fixture
def sfm_copy(tmp_path):
  return _copy_sfm(tmp_path)


def test_sizes(sfm):
  assert sfm.name == "sfm"
  assert sfm.mean_Vx3.shape == (3448, 3)
  assert sfm.id_basis_KxVx3.shape == (63, 3448, 3)
  assert sfm.exp_basis_ExVx3.shape == (6, 3448, 3)
  assert sfm.triangles_Tx3.shape == (6736, 3)
  assert sfm.id_std_K.shape == (63,) and sfm.exp_std_E.shape == (6,)
  np.testing.assert_array_equal(np.asarray(sfm.exp_std_E), 1.0)


def test_identity_basis_is_orthonormal_times_std(sfm):
  std_K = np.asarray(sfm.id_std_K, np.float64)
  # sqrt of variances: the first SFM eigenvalue is 56502 (mm^2), so std ~ 237.7 mm.
  assert 230 < std_K[0] < 245 and np.all(np.diff(std_K) <= 0)
  basis = np.asarray(sfm.id_basis_KxVx3, np.float64) / std_K[:, None, None]
  basis_Kx3V = basis.reshape(63, -1) / float(sfm.unit_scale)  # undo the canonical rescale
  np.testing.assert_allclose(basis_Kx3V @ basis_Kx3V.T, np.eye(63), atol=1e-4)


def test_landmarks(sfm):
  lm = np.asarray(sfm.landmarks_68)
  assert lm.shape == (68,) and len(set(lm.tolist())) == 68
  x_68x3 = np.asarray(sfm.mean_Vx3)[lm]
  assert np.argmax(x_68x3[:, 2]) == 30  # iBUG 31, the nose tip, is closest to the viewer
  assert (x_68x3[0:8, 0] < 0).all() and (x_68x3[9:17, 0] > 0).all()
  assert x_68x3[36, 0] < 0 < x_68x3[45, 0]  # outer eye corners: subject's right, left
  # The jaw runs from the ear down to the chin on each side, in iBUG order.
  assert (np.diff(x_68x3[0:9, 1]) <= 0).all() and (np.diff(x_68x3[8:17, 1]) >= 0).all()
  assert (np.diff(x_68x3[0:17, 0]) > 0).all()
  # iBUG 1 and 17 sit beside the ears at about the outer eye corners' height (0.05 = 7 mm).
  assert abs(x_68x3[0, 1] - x_68x3[36, 1]) < 0.05 and abs(x_68x3[16, 1] - x_68x3[45, 1]) < 0.05
  assert np.isclose(x_68x3[8, 1], x_68x3[:, 1].min())  # the chin is the lowest point


def test_symmetry(sfm):
  sym = np.asarray(sfm.symmetry_V)
  assert sym.shape == (3448,)
  np.testing.assert_array_equal(sym[sym[:845]], np.arange(845))  # an involution on the file's part
  mean = np.asarray(sfm.mean_Vx3)
  # The mean is symmetric: partners are mirror images in x = 0 (0.02 = 3 mm).
  err = np.linalg.norm(mean[sym] * [-1, 1, 1] - mean, axis=1)
  assert err.max() < 0.02 and err.mean() < 0.005
  lm = np.asarray(sfm.landmarks_68)
  np.testing.assert_array_equal(sym[lm[:17]], lm[16::-1])  # the jaw mirrors onto itself


def test_frontal_projection(sfm):
  pix_68x2 = np.asarray(to_pixels(project(sfm.mean_Vx3[sfm.landmarks_68],
                                          np.array([0, 0, 0, 1, 0, 0], np.float32)), (256, 256)))
  assert pix_68x2[36, 0] < pix_68x2[45, 0]  # subject's right eye on the image's left
  assert pix_68x2[19, 1] < pix_68x2[30, 1] < pix_68x2[8, 1]  # brow above nose above chin
  np.testing.assert_allclose(pix_68x2.mean(0), [127.5, 127.5], atol=1e-3)


def test_npz_round_trip(sfm, tmp_path):
  save_npz(sfm, tmp_path / "sfm.npz")
  back = load_npz(tmp_path / "sfm.npz")
  assert back.name == "sfm"
  for f in sfm.__dataclass_fields__:
    if f != "name":
      np.testing.assert_array_equal(np.asarray(getattr(back, f)), np.asarray(getattr(sfm, f)))


def _edit(path, fn):
  path.write_bytes(fn(path.read_bytes()))


@pytest.mark.parametrize("fname,corrupt,match", [
    (SHAPE_FILE, lambda b: b[:-100], "truncated"),
    (SHAPE_FILE, lambda b: b[:50000], "truncated: orthonormal PCA basis"),
    (SHAPE_FILE, lambda b: b + b"\0" * 7, "7 trailing bytes"),
    (SHAPE_FILE, lambda b: struct.pack("<I", 2) + b[4:], "expected u32 version 1, got 2"),
    (SHAPE_FILE, lambda b: b[:4] + struct.pack("<i", 10345) + b[8:], "mean"),
    (SHAPE_FILE, lambda b: b[:4] + struct.pack("<i", 2**30) + b[8:], "truncated"),
    (EXPRESSION_FILE, lambda b: b[:-4], "truncated"),
    (EXPRESSION_FILE, lambda b: struct.pack("<Q", 2**40) + b[8:], "blendshape count"),
    (LANDMARK_FILE, lambda b: b.replace(b"[landmark_mappings]", b"[maps]"), "landmark_mappings"),
    (LANDMARK_FILE, lambda b: b.replace(b" 9 =    33", b" 9 = 99999"), "outside"),
])
def test_corrupt_files_name_the_file(sfm_copy, fname, corrupt, match):
  _edit(sfm_copy / fname, corrupt)
  with pytest.raises(ModelFormatError, match=match) as info:
    load_sfm(sfm_copy)
  assert str(sfm_copy / fname) in str(info.value)


def test_missing_files(tmp_path):
  with pytest.raises(ModelFormatError, match="no such directory"):
    load_sfm(tmp_path / "nowhere")
  d = _copy_sfm(tmp_path)
  (d / EXPRESSION_FILE).unlink()
  with pytest.raises(ModelFormatError, match=f"{d / EXPRESSION_FILE}: no such file"):
    load_sfm(d)
