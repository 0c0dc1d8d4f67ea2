"""mm.bfm on tiny format-exact BFM fixtures (never real BFM data), and 300W-LP `Pose_Para`."""

import pickle
import re

import numpy as np
import pytest
import scipy.io
from hypothesis import given, settings, strategies as st

from cprfa_jax.geometry.projection import (pose_from_pose_para, pose_para_from_pose, project,
                                           project_pose_para, to_pixels)
from cprfa_jax.mm.bfm import load_bfm2009, load_bfm_3ddfa, params_from_300wlp
from cprfa_jax.mm.model import ModelFormatError, shape

NX, NY = 15, 14
N = NX * NY  # 210 vertices


def _mesh(seed=0):
  """A face-sized cap in BFM-like raw units (micrometres), off-centre like a real scan:
  mean (N, 3), 1-based triangles (T, 3), 68 0-based landmark vertices."""
  rng = np.random.default_rng(seed)
  gx, gy = np.meshgrid(np.linspace(-1, 1, NX), np.linspace(-1, 1, NY))
  z = 1.0 - 0.5 * (gx**2 + gy**2)
  mean = np.stack([7e4 * gx, 9e4 * gy, 5e4 * z], -1).reshape(N, 3) + [1.2e3, 8e3, -3e4]
  mean += rng.normal(scale=500.0, size=mean.shape)
  idx = np.arange(N).reshape(NY, NX)
  a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
  tri = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3),
                        np.stack([a, d, c], -1).reshape(-1, 3)])
  return mean, tri + 1, rng.permutation(N)[:68]


def _orthonormal(rng, k):
  return np.linalg.qr(rng.normal(size=(3 * N, k)))[0]


def _bfm2009_files(tmp_path, seed=0):
  rng = np.random.default_rng(seed)
  mean, tri1, lm = _mesh(seed)
  pc = _orthonormal(rng, 199)
  ev = np.sort(rng.uniform(1e3, 5e4, 199))[::-1]
  mat = tmp_path / "01_MorphableModel.mat"
  scipy.io.savemat(mat, {
      "shapeMU": mean.reshape(-1, 1).astype(np.float32), "shapePC": pc.astype(np.float32),
      "shapeEV": ev.reshape(-1, 1).astype(np.float32), "tl": tri1.astype(np.float64),
      "texMU": rng.uniform(0, 255, (3 * N, 1)).astype(np.float32),
      "texEV": ev.reshape(-1, 1).astype(np.float32)})
  w_exp = rng.normal(size=(3 * N, 29)) * 1e3
  mu_exp = rng.normal(size=(3 * N, 1)) * 1e3
  sigma_exp = rng.uniform(0.5, 2.0, (29, 1))
  exp_mat = tmp_path / "Model_Expression.mat"
  scipy.io.savemat(exp_mat, {"w_exp": w_exp.astype(np.float32), "mu_exp": mu_exp.astype(np.float32),
                             "sigma_exp": sigma_exp.astype(np.float32)})
  raw = dict(mean=mean, pc=pc, ev=ev, w_exp=w_exp, mu_exp=mu_exp, sigma_exp=sigma_exp[:, 0], lm=lm)
  return mat, exp_mat, raw


def _3ddfa_arrays(seed=0, sigma=True):
  rng = np.random.default_rng(seed)
  mean, tri1, lm = _mesh(seed)
  d = {"u": mean.reshape(-1, 1).astype(np.float32),
       "w_shp": (_orthonormal(rng, 40) * 1e4).astype(np.float32),
       "w_exp": (rng.normal(size=(3 * N, 10)) * 1e3).astype(np.float32),
       "tri": tri1.T.astype(np.float64),
       "keypoints": (3 * lm[:, None] + np.arange(3)).reshape(1, -1).astype(np.float64)}
  if sigma:
    d["sigma"] = rng.uniform(0.5, 3.0, (40, 1))
    d["sigma_exp"] = rng.uniform(0.5, 3.0, (10, 1))
  return d, lm


def _canonical(model, raw_Vx3):
  return float(model.unit_scale) * (raw_Vx3 - np.asarray(model.offset_3, np.float64))


def test_bfm2009_shapes_and_formula(tmp_path):
  mat, exp_mat, raw = _bfm2009_files(tmp_path)
  lm_file = tmp_path / "bfm_68.txt"
  np.savetxt(lm_file, raw["lm"], fmt="%d")
  m = load_bfm2009(mat, landmarks=lm_file, expression=exp_mat)
  assert m.name == "bfm2009"
  assert m.mean_Vx3.shape == (N, 3) and m.id_basis_KxVx3.shape == (199, N, 3)
  assert m.exp_basis_ExVx3.shape == (29, N, 3) and m.triangles_Tx3.shape == (2 * 14 * 13, 3)
  np.testing.assert_array_equal(np.asarray(m.landmarks_68), raw["lm"])
  np.testing.assert_allclose(np.asarray(m.id_std_K), raw["ev"], rtol=1e-6)
  rng = np.random.default_rng(1)
  c_id, c_exp = rng.normal(size=199) * raw["ev"], rng.normal(size=29) * raw["sigma_exp"]
  x_raw = (raw["mean"].reshape(-1) + raw["mu_exp"][:, 0] + raw["pc"] @ c_id
           + raw["w_exp"] @ c_exp).reshape(N, 3)
  a_id, a_exp = params_from_300wlp(m, c_id, c_exp)
  np.testing.assert_allclose(np.asarray(shape(m, a_id, a_exp)), _canonical(m, x_raw), atol=1e-4)
  # Without the expression file: E = 0, and landmarks may be an array.
  m0 = load_bfm2009(mat, landmarks=raw["lm"])
  assert m0.exp_basis_ExVx3.shape == (0, N, 3)
  np.testing.assert_allclose(np.asarray(m0.mean_Vx3), _canonical(m0, raw["mean"]), atol=1e-5)


def test_bfm2009_errors(tmp_path):
  mat, exp_mat, raw = _bfm2009_files(tmp_path)
  with pytest.raises(ModelFormatError, match=f"{mat}.*no landmarks"):
    load_bfm2009(mat)
  with pytest.raises(ModelFormatError, match="need 68"):
    load_bfm2009(mat, landmarks=raw["lm"][:60])
  with pytest.raises(ModelFormatError, match="nothere.txt"):
    load_bfm2009(mat, landmarks=tmp_path / "nothere.txt")
  small = tmp_path / "small_exp.mat"
  scipy.io.savemat(small, {"w_exp": np.zeros((3 * N - 3, 29))})
  with pytest.raises(ModelFormatError, match=f"{small}: w_exp must be"):
    load_bfm2009(mat, landmarks=raw["lm"], expression=small)
  d = scipy.io.loadmat(mat)
  bad = tmp_path / "bad_ev.mat"
  scipy.io.savemat(bad, {"shapeMU": d["shapeMU"], "shapePC": d["shapePC"], "tl": d["tl"],
                         "shapeEV": d["shapeEV"][:198]})
  with pytest.raises(ModelFormatError, match=f"{bad}: shapeEV must be 199"):
    load_bfm2009(bad, landmarks=raw["lm"])


@pytest.mark.parametrize("fmt", ["mat", "npz", "pkl"])
def test_3ddfa_layout(tmp_path, fmt):
  d, lm = _3ddfa_arrays()
  path = tmp_path / f"bfm_noneck.{fmt}"
  if fmt == "mat":
    scipy.io.savemat(path, d)
  elif fmt == "npz":
    np.savez(path, **d)
  else:
    path.write_bytes(pickle.dumps(d))
  m = load_bfm_3ddfa(path)
  assert m.name == "bfm_3ddfa"
  assert m.id_basis_KxVx3.shape == (40, N, 3) and m.exp_basis_ExVx3.shape == (10, N, 3)
  np.testing.assert_array_equal(np.asarray(m.landmarks_68), lm)
  np.testing.assert_allclose(np.asarray(m.id_std_K), d["sigma"][:, 0], rtol=1e-6)
  # 300W-LP ships 199 + 29 raw coefficients: only the model's first 40 + 10 act.
  rng = np.random.default_rng(2)
  shape_para, exp_para = rng.normal(size=(199, 1)) * 2, rng.normal(size=(29, 1))
  x_raw = (d["u"][:, 0].astype(np.float64) + d["w_shp"] @ shape_para[:40, 0]
           + d["w_exp"] @ exp_para[:10, 0]).reshape(N, 3)
  a_id, a_exp = params_from_300wlp(m, shape_para, exp_para)
  assert a_id.shape == (40,) and a_exp.shape == (10,)
  np.testing.assert_allclose(np.asarray(shape(m, a_id, a_exp)), _canonical(m, x_raw), atol=1e-4)
  a_id, a_exp = params_from_300wlp(m, shape_para[:5], exp_para[:3])  # padded with zeros
  assert a_id.shape == (40,) and np.all(np.asarray(a_id[5:]) == 0)


def test_3ddfa_defaults_and_keypoints(tmp_path):
  d, lm = _3ddfa_arrays(sigma=False)
  d["tri"] = d["tri"].T - 1  # (T, 3) 0-based is accepted too
  d["keypoints"] = d["keypoints"] + 1  # MATLAB's 1-based flat indices
  path = tmp_path / "m.npz"
  np.savez(path, **d)
  m = load_bfm_3ddfa(path)
  np.testing.assert_array_equal(np.asarray(m.landmarks_68), lm)
  np.testing.assert_array_equal(np.asarray(m.id_std_K), 1.0)  # std unknown: raw coefficients
  assert int(np.asarray(m.triangles_Tx3).max()) == N - 1


@pytest.mark.parametrize("edit,match", [
    (lambda d: d.pop("w_exp"), r"missing key 'w_exp'; keys found: \['keypoints', 'sigma'"),
    (lambda d: d.update(w_shp=d["w_shp"][:-3]), r"w_shp must be \(630, K\)"),
    (lambda d: d.update(u=d["u"][:-1]), "u must be a"),
    (lambda d: d.update(tri=d["tri"][:2]), "tri must be"),
    (lambda d: d.update(tri=d["tri"] + N), "tri indices"),
    (lambda d: d.update(keypoints=d["keypoints"][:, :-3]), "keypoints must hold 204"),
    (lambda d: d.update(keypoints=d["keypoints"][:, ::-1].copy()),
     r"keypoints are not \(x, y, z\) index triples"),
    (lambda d: d.update(sigma_exp=-d["sigma_exp"]), "sigma_exp must be 10 positive"),
])
def test_3ddfa_errors_name_the_file(tmp_path, edit, match):
  d, _ = _3ddfa_arrays()
  edit(d)
  path = tmp_path / "broken.mat"
  scipy.io.savemat(path, d)
  with pytest.raises(ModelFormatError, match=re.escape(f"{path}: ") + match):
    load_bfm_3ddfa(path)


def test_unreadable_files(tmp_path):
  with pytest.raises(ModelFormatError, match="nothere.mat: no such file"):
    load_bfm_3ddfa(tmp_path / "nothere.mat")
  text = tmp_path / "notes.mat"
  text.write_text("not a MATLAB file\n")
  with pytest.raises(ModelFormatError, match="notes.mat: not a readable .mat"):
    load_bfm_3ddfa(text)
  other = tmp_path / "model.obj"
  other.write_text("v 0 0 0\n")
  with pytest.raises(ModelFormatError, match="model.obj: unknown model file type"):
    load_bfm_3ddfa(other)


# ----------------------------------------------------------------------------------------------
# 300W-LP Pose_Para <-> pose_6 on the canonical model

@pytest.fixture(scope="module")
def bfm_3ddfa(tmp_path_factory):
  d, _ = _3ddfa_arrays()
  path = tmp_path_factory.mktemp("bfm") / "bfm.npz"
  np.savez(path, **d)
  return load_bfm_3ddfa(path), d["u"].reshape(N, 3)


pose_paras = st.tuples(
    st.floats(-0.8, 0.8), st.floats(-1.45, 1.45), st.floats(-0.8, 0.8),  # pitch, yaw, roll
    st.floats(100, 350), st.floats(100, 350), st.floats(-100, 100),      # tx, ty, tz (px)
    st.floats(5e-4, 3e-3))                                               # scale (px per um)


@settings(max_examples=30, deadline=None)
@given(pp=pose_paras, hw=st.sampled_from([(450, 450), (480, 640)]))
def test_pose_para_projection_matches(bfm_3ddfa, pp, hw):
  model, u_raw_Nx3 = bfm_3ddfa
  pp = np.asarray(pp, np.float32)
  want = np.asarray(project_pose_para(u_raw_Nx3, pp, hw))
  pose_6 = pose_from_pose_para(pp, model.offset_3, model.unit_scale, hw)
  got = np.asarray(to_pixels(project(model.mean_Vx3, pose_6), hw))
  np.testing.assert_allclose(got, want, atol=1e-3)


@settings(max_examples=30, deadline=None)
@given(pp=pose_paras, hw=st.sampled_from([(450, 450), (480, 640)]))
def test_pose_para_round_trip(bfm_3ddfa, pp, hw):
  model, _ = bfm_3ddfa
  pp = np.asarray(pp, np.float32)
  back = np.asarray(pose_para_from_pose(
      pose_from_pose_para(pp, model.offset_3, model.unit_scale, hw), model.offset_3,
      model.unit_scale, hw))
  np.testing.assert_allclose(back[:3], pp[:3], atol=1e-5)     # pitch, yaw, roll
  np.testing.assert_allclose(back[3:5], pp[3:5], atol=1e-3)   # tx, ty
  np.testing.assert_allclose(back[6], pp[6], rtol=1e-5)       # scale; tz is not observable
