"""Basel Face Model readers, in the two layouts 300W-LP users have (`data-formats.md` §2).

The BFM licence forbids redistribution: these read the user's own files; the project ships no
BFM data. Vertex vectors are x, y, z interleaved per vertex (3N,), as in BFM and 3DDFA.

300W-LP's `Shape_Para` / `Exp_Para` are raw coefficients of the 3DDFA bases: a face is
u + w_shp @ Shape_Para + w_exp @ Exp_Para. The loaders store basis column k times its std s_k
with `id_std_K[k]` = s_k, so raw coefficient c_k is the unit-variance coefficient c_k / s_k
(`params_from_300wlp`), and `offset_3` / `unit_scale` carry `Pose_Para` over to the canonical
frame (`geometry.projection.pose_from_pose_para`).
"""

from __future__ import annotations

import os
import pathlib
import pickle

import jax.numpy as jnp
import numpy as np
import scipy.io

from cprfa_jax.mm.model import N_LANDMARKS, ModelFormatError, MorphableModel, build_model


def load_bfm2009(mat_path: str | os.PathLike, landmarks=None,
                 expression: str | os.PathLike | None = None) -> MorphableModel:
  """BFM2009 `01_MorphableModel.mat` -> `MorphableModel` named "bfm2009".

  Keys read: `shapeMU` (3N, 1), `shapePC` (3N, 199) orthonormal, `shapeEV` (199, 1) standard
  deviations, `tl` (T, 3) 1-based triangles. BFM2009 has no landmarks: `landmarks` must be
  68 0-based vertex indices in iBUG order, as an array or a text file of integers.
  `expression`: optional .mat with `w_exp` (3N, E), `mu_exp` (3N, 1) added to the mean, and
  `sigma_exp` (E, 1) standard deviations (std 1 when absent). Without it the model has E = 0.
  """
  path = pathlib.Path(mat_path)
  d = _load_arrays(path)
  mean = _vertices(_key(d, path, "shapeMU"), path, "shapeMU")
  n = len(mean)
  ev = _key(d, path, "shapeEV")
  id_basis, id_std = _scaled_basis(_key(d, path, "shapePC"), ev, path, "shapePC", "shapeEV", n)
  tri = _triangles(_key(d, path, "tl"), path, "tl", n)
  if landmarks is None:
    raise ModelFormatError(
        f"{path}: BFM2009 has no landmarks; pass landmarks= (68 0-based vertex indices in iBUG "
        "order, as an array or a text file)")
  lm = _landmark_list(landmarks, n)
  exp_basis, exp_std = np.zeros((0, n, 3)), np.zeros(0)
  if expression is not None:
    epath = pathlib.Path(expression)
    e = _load_arrays(epath)
    w_exp = _key(e, epath, "w_exp")
    if np.ndim(w_exp) != 2 or w_exp.shape[0] != 3 * n:
      raise ModelFormatError(
          f"{epath}: w_exp must be ({3 * n}, E) to match {path}'s {n} vertices, got "
          f"{np.shape(w_exp)} (3DDFA's expression files are on the 53,215-vertex crop: use "
          "load_bfm_3ddfa with a 3DDFA-layout model for those)")
    exp_basis, exp_std = _scaled_basis(w_exp, e.get("sigma_exp"), epath, "w_exp", "sigma_exp", n)
    if "mu_exp" in e:
      mean = mean + _vertices(e["mu_exp"], epath, "mu_exp", n)
  return build_model(mean, id_basis, exp_basis, tri, lm, id_std_K=id_std, exp_std_E=exp_std,
                     name="bfm2009", source=str(path))


def load_bfm_3ddfa(path: str | os.PathLike) -> MorphableModel:
  """A 3DDFA-layout BFM (the model of 300W-LP's parameters) -> `MorphableModel` "bfm_3ddfa".

  `path`: .mat, .npz, or .pkl (a pickled dict of arrays) with keys `u` (3N,) mean (which in
  3DDFA already includes the mean expression), `w_shp` (3N, K_id), `w_exp` (3N, K_exp),
  `tri` (3, T) or (T, 3) 1-based (0-based is recognised by an index 0), `keypoints` (204,) flat
  indices into the 3N vector, landmark l at [3v, 3v+1, 3v+2] (0-based; the 1-based MATLAB
  form [3v+1, ...] is recognised by its residue mod 3). Optional standard deviations
  `sigma_shp` (or `sigma`) (K_id,) and `sigma_exp` (K_exp,): when absent the std is 1, so the
  model's coefficients are the raw ones and a N(0, 1) prior on them is not meaningful.
  Only open .pkl files you trust: unpickling can run code.
  """
  path = pathlib.Path(path)
  d = _load_arrays(path)
  mean = _vertices(_key(d, path, "u"), path, "u")
  n = len(mean)
  sigma_key = "sigma_shp" if "sigma_shp" in d else "sigma"
  id_basis, id_std = _scaled_basis(_key(d, path, "w_shp"), d.get(sigma_key), path, "w_shp",
                                   sigma_key, n)
  exp_basis, exp_std = _scaled_basis(_key(d, path, "w_exp"), d.get("sigma_exp"), path, "w_exp",
                                     "sigma_exp", n)
  tri = _triangles(_key(d, path, "tri"), path, "tri", n)
  lm = decode_keypoints(_key(d, path, "keypoints"), path, n)
  return build_model(mean, id_basis, exp_basis, tri, lm, id_std_K=id_std, exp_std_E=exp_std,
                     name="bfm_3ddfa", source=str(path))


def params_from_300wlp(model: MorphableModel, shape_para, exp_para):
  """300W-LP `Shape_Para` (199,) or (199, 1) and `Exp_Para` (29,) or (29, 1), raw coefficients
  -> (alpha_id (K,), alpha_exp (E,)) unit-variance coefficients for `mm.model.shape`: raw / std,
  truncated or zero-padded to the model's K and E (a 40-component basis takes the first 40)."""
  def convert(raw, std_K):
    raw = jnp.asarray(raw, jnp.float32).reshape(-1)[:std_K.shape[0]]
    return jnp.pad(raw, (0, std_K.shape[0] - raw.shape[0])) / std_K
  return convert(shape_para, model.id_std_K), convert(exp_para, model.exp_std_E)


def decode_keypoints(keypoints, path, n: int) -> np.ndarray:
  """3DDFA `keypoints` (204,) flat indices into the 3N vector -> 68 0-based vertex indices."""
  kp = _integers(keypoints, path, "keypoints").reshape(-1)
  if kp.shape != (3 * N_LANDMARKS,):
    raise ModelFormatError(f"{path}: keypoints must hold {3 * N_LANDMARKS} flat indices (68 "
                           f"landmarks x, y, z), got {kp.shape[0]}")
  x = kp[0::3]
  if (kp[1::3] != x + 1).any() or (kp[2::3] != x + 2).any():
    raise ModelFormatError(f"{path}: keypoints are not (x, y, z) index triples [i, i+1, i+2]")
  base = int(x[0] % 3)
  if base not in (0, 1) or (x % 3 != base).any():
    raise ModelFormatError(f"{path}: keypoints x indices are not all 3v (0-based) or all "
                           "3v+1 (1-based)")
  lm = (x - base) // 3
  if lm.min() < 0 or lm.max() >= n:
    raise ModelFormatError(f"{path}: keypoints address vertices [{lm.min()}, {lm.max()}] "
                           f"outside the model's {n}")
  return lm


# ----------------------------------------------------------------------------------------------
# Host-side helpers: every error names the file and the key.

def _load_arrays(path: pathlib.Path) -> dict:
  if not path.is_file():
    raise ModelFormatError(f"{path}: no such file")
  suffix = path.suffix.lower()
  try:
    if suffix == ".mat":
      d = scipy.io.loadmat(path)
    elif suffix == ".npz":
      with np.load(path, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    elif suffix == ".pkl":
      with open(path, "rb") as f:
        # latin1: 3DDFA's pickles were written by Python 2 with numpy arrays inside.
        d = pickle.load(f, encoding="latin1")
    else:
      raise ModelFormatError(f"{path}: unknown model file type {suffix!r}; expected .mat, .npz "
                             "or .pkl")
  except ModelFormatError:
    raise
  except NotImplementedError as e:  # scipy: MATLAB v7.3 is HDF5
    raise ModelFormatError(f"{path}: MATLAB v7.3 (HDF5) files are not supported; re-save it "
                           f"with save(..., '-v7') ({e})") from e
  except Exception as e:  # any parser error means "not a readable model file"
    raise ModelFormatError(f"{path}: not a readable {suffix} file ({type(e).__name__}: {e})") from e
  if not isinstance(d, dict):
    raise ModelFormatError(f"{path}: expected a dict of arrays, got {type(d).__name__}")
  return {k: v for k, v in d.items() if not k.startswith("__")}


def _key(d: dict, path, key: str) -> np.ndarray:
  if key not in d:
    raise ModelFormatError(f"{path}: missing key {key!r}; keys found: {sorted(d)}")
  return d[key]


def _vertices(vec, path, key: str, n: int | None = None) -> np.ndarray:
  """(3N,), (3N, 1) or (1, 3N) interleaved x, y, z -> (N, 3)."""
  a = np.asarray(vec, np.float64)
  if a.ndim > 2 or (a.ndim == 2 and min(a.shape) != 1) or a.size == 0 or a.size % 3:
    raise ModelFormatError(f"{path}: {key} must be a (3N,) or (3N, 1) vector, got {a.shape}")
  if n is not None and a.size != 3 * n:
    raise ModelFormatError(f"{path}: {key} has {a.size} entries, expected {3 * n}")
  return a.reshape(-1, 3)


def _scaled_basis(w, std, path, key: str, std_key: str, n: int):
  """(3N, K) basis and (K,) std or None -> ((K, N, 3) basis times std, (K,) std)."""
  w = np.asarray(w, np.float64)
  if w.ndim != 2 or w.shape[0] != 3 * n:
    raise ModelFormatError(f"{path}: {key} must be ({3 * n}, K) to match the mean's {n} "
                           f"vertices, got {w.shape}")
  k = w.shape[1]
  std = np.ones(k) if std is None else np.asarray(std, np.float64).reshape(-1)
  if std.shape != (k,) or not (std > 0).all():
    raise ModelFormatError(f"{path}: {std_key} must be {k} positive standard deviations to "
                           f"match {key}'s columns, got shape {std.shape}")
  return (w * std).T.reshape(k, n, 3), std


def _integers(a, path, key: str) -> np.ndarray:
  a = np.asarray(a)
  if a.size == 0 or not np.issubdtype(a.dtype, np.number) or (a != np.round(a)).any():
    raise ModelFormatError(f"{path}: {key} must be integer indices, got {a.dtype} {a.shape}")
  return a.astype(np.int64)


def _triangles(tri, path, key: str, n: int) -> np.ndarray:
  """(T, 3) or (3, T), 1-based (or 0-based if it holds a 0) -> (T, 3) 0-based."""
  t = _integers(tri, path, key)
  if t.ndim == 2 and t.shape[0] == 3 and t.shape[1] != 3:
    t = t.T
  if t.ndim != 2 or t.shape[1] != 3:
    raise ModelFormatError(f"{path}: {key} must be (T, 3) or (3, T) triangles, got {t.shape}")
  t = t if t.min() == 0 else t - 1
  if t.min() < 0 or t.max() >= n:
    raise ModelFormatError(f"{path}: {key} indices span [{t.min()}, {t.max()}] (0-based) but "
                           f"the mean has {n} vertices")
  return t


def _landmark_list(landmarks, n: int) -> np.ndarray:
  source = "landmarks"
  if isinstance(landmarks, (str, os.PathLike)):
    source = os.fspath(landmarks)
    try:
      landmarks = np.loadtxt(source, ndmin=1)
    except (OSError, ValueError) as e:
      raise ModelFormatError(f"{source}: cannot read 68 landmark vertex indices ({e})") from e
  lm = _integers(landmarks, source, "landmarks").reshape(-1)
  if lm.shape != (N_LANDMARKS,) or lm.min() < 0 or lm.max() >= n:
    raise ModelFormatError(f"{source}: need 68 0-based vertex indices below {n}, got "
                           f"{lm.shape[0]} in [{lm.min()}, {lm.max()}]")
  return lm
