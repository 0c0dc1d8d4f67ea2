"""The 3D morphable model of Eq. 1 as a pytree, and its canonical frame.

Every source (synthetic, SFM, BFM) is brought into one canonical frame so that the paper's
initial pose p0 = [0, 0, 0, 1, 0, 0] (§2.3) puts a face of sensible size in the middle of a
normalised image:

* x to the image's right (the subject's left, for a frontal face), y up, z toward the camera;
* origin at the centroid of the 68 landmarks of the mean shape;
* unit length = the x-extent of the 68 landmarks of the mean shape (about the jaw width).

`offset_3` and `unit_scale` remember the map from the source's raw units:
X_canonical = unit_scale * (X_raw - offset_3). Pose converters for datasets that were annotated
in raw units (300W-LP's `Pose_Para`) need it.
"""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np
from flax import struct
from scipy.spatial import cKDTree

N_LANDMARKS = 68


class ModelFormatError(ValueError):
  """A morphable-model file or array is not what the loader expected."""


@struct.dataclass
class MorphableModel:
  """Eq. 1: X = mean + A_id alpha_id + A_exp alpha_exp, in the canonical frame.

  The bases are scaled by their standard deviations, so unit-variance coefficients are the
  natural prior; `id_std_K` / `exp_std_E` convert to the source's raw coefficients
  (raw = alpha * std).
  """
  mean_Vx3: jnp.ndarray
  id_basis_KxVx3: jnp.ndarray
  exp_basis_ExVx3: jnp.ndarray
  id_std_K: jnp.ndarray
  exp_std_E: jnp.ndarray
  triangles_Tx3: jnp.ndarray
  landmarks_68: jnp.ndarray
  symmetry_V: jnp.ndarray
  pncc_Vx3: jnp.ndarray
  offset_3: jnp.ndarray
  unit_scale: jnp.ndarray
  name: str = struct.field(pytree_node=False, default="")

  @property
  def num_vertices(self) -> int:
    return self.mean_Vx3.shape[0]

  @property
  def num_id(self) -> int:
    return self.id_basis_KxVx3.shape[0]

  @property
  def num_exp(self) -> int:
    return self.exp_basis_ExVx3.shape[0]


def linear_shape(mean_Vx3, id_basis_KxVx3, exp_basis_ExVx3, alpha_id_K, alpha_exp_E, xp=jnp):
  """Eq. 1, the one place it is written: S = S̄ + A_id α_id + A_exp α_exp, on any vertex subset
  (the bases' V) and in any array library `xp` with a `tensordot` (jax.numpy in the networks,
  NumPy float64 in the host baseline fits). The bases hold as many components as the α."""
  return (mean_Vx3 + xp.tensordot(alpha_id_K, id_basis_KxVx3, 1)
          + xp.tensordot(alpha_exp_E, exp_basis_ExVx3, 1))


def shape(model: MorphableModel, alpha_id_K, alpha_exp_E) -> jnp.ndarray:
  """Eq. 1 (`linear_shape`). alpha_id_K (K,), alpha_exp_E (E,) unit-variance coefficients ->
  vertices (V, 3).

  Fewer coefficients than bases are allowed (the rest are zero), as 300W-LP-style pipelines
  often use the first 40 identity and 10 expression components.
  """
  alpha_id_K = jnp.asarray(alpha_id_K, jnp.float32)
  alpha_exp_E = jnp.asarray(alpha_exp_E, jnp.float32)
  k, e = alpha_id_K.shape[-1], alpha_exp_E.shape[-1]
  return linear_shape(model.mean_Vx3, model.id_basis_KxVx3[:k], model.exp_basis_ExVx3[:e],
                      alpha_id_K, alpha_exp_E)


def split_alpha(alpha_A, num_id: int):
  """The compact α = [α_id (K), α_exp (E)] the fit and the predictor carry -> (α_id, α_exp)."""
  return alpha_A[..., :num_id], alpha_A[..., num_id:]


def join_alpha(alpha_id_K, alpha_exp_E, xp=np):
  """(α_id, α_exp) -> the compact α (`split_alpha`'s inverse), along the last axis."""
  return xp.concatenate([alpha_id_K, alpha_exp_E], axis=-1)


def vertices(model: MorphableModel, alpha_A) -> jnp.ndarray:
  """Eq. 1 from the compact α = [α_id (K), α_exp (E)] that the fit and the predictor carry
  (A = K + E, the regressor's `num_alpha`): vertices (V, 3)."""
  alpha_A = jnp.asarray(alpha_A, jnp.float32)
  return shape(model, *split_alpha(alpha_A, model.num_id))


def pncc_code(mean_Vx3: np.ndarray) -> np.ndarray:
  """The PNCC colour of each vertex: the mean shape's x, y, z min-max normalised to [0, 1]
  (3DDFA's `pncc_code`, which is also CPRFA's DAFI colour code, §2.1)."""
  lo, hi = mean_Vx3.min(0), mean_Vx3.max(0)
  return ((mean_Vx3 - lo) / np.maximum(hi - lo, 1e-12)).astype(np.float32)


def orient_triangles(mean_Vx3: np.ndarray, tri_Tx3: np.ndarray) -> np.ndarray:
  """Flip the winding of all triangles if needed so that normals point out of the face (+z for
  a frontal face): visibility tests and the renderer rely on one orientation."""
  a, b, c = (mean_Vx3[tri_Tx3[:, i]] for i in range(3))
  area_normal_z = np.cross(b - a, c - a)[:, 2].sum()
  return tri_Tx3[:, [0, 2, 1]] if area_normal_z < 0 else tri_Tx3


def mirror_symmetry(mean_Vx3: np.ndarray) -> np.ndarray:
  """Index of each vertex's mirror partner: nearest vertex of the mean mirrored in x = 0."""
  mirrored = mean_Vx3 * np.array([-1.0, 1.0, 1.0])
  _, idx = cKDTree(mean_Vx3).query(mirrored)
  return idx.astype(np.int32)


def build_model(mean_Vx3, id_basis_KxVx3, exp_basis_ExVx3, triangles_Tx3, landmarks_68, *,
                id_std_K=None, exp_std_E=None, symmetry_V=None, name="",
                source="arrays") -> MorphableModel:
  """Validates raw arrays, moves them into the canonical frame and fills derived fields.

  Args are in the source's raw units; bases are already scaled by their std (callers scale
  orthonormal PCA bases themselves). `symmetry_V` is given in raw indices, or computed by
  mirroring. `source` names the file in error messages.
  """
  mean = np.asarray(mean_Vx3, np.float64)
  if mean.ndim != 2 or mean.shape[1] != 3 or mean.shape[0] < N_LANDMARKS:
    raise ModelFormatError(f"{source}: mean shape must be (V, 3) with V >= 68, got {mean.shape}")
  v = mean.shape[0]
  bases = []
  for label, basis in (("identity", id_basis_KxVx3), ("expression", exp_basis_ExVx3)):
    basis = np.asarray(basis, np.float64)
    if basis.ndim != 3 or basis.shape[1:] != (v, 3):
      raise ModelFormatError(
          f"{source}: {label} basis must be (K, {v}, 3) to match the mean, got {basis.shape}")
    bases.append(basis)
  tri = np.asarray(triangles_Tx3, np.int64)
  if tri.ndim != 2 or tri.shape[1] != 3 or tri.min(initial=0) < 0 or tri.max(initial=0) >= v:
    raise ModelFormatError(
        f"{source}: triangles must be (T, 3) 0-based indices below {v}, got shape {tri.shape} "
        f"and range [{tri.min(initial=0)}, {tri.max(initial=0)}]")
  lm = np.asarray(landmarks_68, np.int64).reshape(-1)
  if lm.shape != (N_LANDMARKS,) or lm.min() < 0 or lm.max() >= v:
    raise ModelFormatError(
        f"{source}: need 68 landmark vertex indices below {v}, got {lm.shape[0]} in "
        f"[{lm.min(initial=0)}, {lm.max(initial=0)}]")

  # Canonical frame (module docstring): centre and unit from the landmarks of the mean.
  offset = mean[lm].mean(0)
  extent = np.ptp(mean[lm, 0])
  if not np.isfinite(extent) or extent <= 0:
    raise ModelFormatError(f"{source}: the 68 landmarks have no x-extent; are the indices right?")
  unit = 1.0 / extent
  mean_c = (mean - offset) * unit
  id_c, exp_c = (b * unit for b in bases)

  std = []
  for label, s, k in (("identity", id_std_K, id_c.shape[0]), ("expression", exp_std_E, exp_c.shape[0])):
    s = np.ones(k) if s is None else np.asarray(s, np.float64).reshape(-1)
    if s.shape != (k,):
      raise ModelFormatError(f"{source}: {label} std must have {k} entries, got {s.shape}")
    std.append(s)

  sym = mirror_symmetry(mean_c) if symmetry_V is None else np.asarray(symmetry_V, np.int64)
  if sym.shape != (v,) or sym.min() < 0 or sym.max() >= v:
    raise ModelFormatError(f"{source}: symmetry map must be ({v},) indices, got {sym.shape}")

  f32 = lambda x: jnp.asarray(x, jnp.float32)
  i32 = lambda x: jnp.asarray(x, jnp.int32)
  return MorphableModel(
      mean_Vx3=f32(mean_c), id_basis_KxVx3=f32(id_c), exp_basis_ExVx3=f32(exp_c),
      id_std_K=f32(std[0]), exp_std_E=f32(std[1]),
      triangles_Tx3=i32(orient_triangles(mean_c, tri)), landmarks_68=i32(lm),
      symmetry_V=i32(sym), pncc_Vx3=f32(pncc_code(mean_c)),
      offset_3=f32(offset), unit_scale=f32(unit), name=name)


_FIELDS = [f for f in MorphableModel.__dataclass_fields__ if f != "name"]


def save_npz(model: MorphableModel, path: str | os.PathLike) -> None:
  """Writes every field of the model to one .npz file."""
  np.savez_compressed(path, name=np.asarray(model.name),
                      **{f: np.asarray(getattr(model, f)) for f in _FIELDS})


def load_npz(path: str | os.PathLike) -> MorphableModel:
  """Reads a model written by `save_npz`; a wrong or corrupt file names the file and the field."""
  path = os.fspath(path)
  try:
    with np.load(path, allow_pickle=False) as data:
      arrays = {k: data[k] for k in data.files}
  except FileNotFoundError:
    raise ModelFormatError(f"{path}: no such model file") from None
  except Exception as e:  # zipfile/pickle/ValueError: all mean "not a model npz"
    raise ModelFormatError(f"{path}: not a readable .npz model file ({e})") from e
  missing = [f for f in _FIELDS if f not in arrays]
  if missing:
    raise ModelFormatError(f"{path}: not a cprfa-jax model file, missing fields {missing}")
  model = MorphableModel(name=str(arrays["name"]),
                         **{f: jnp.asarray(arrays[f]) for f in _FIELDS})
  v = model.mean_Vx3.shape[0]
  expect = {"mean_Vx3": (v, 3), "pncc_Vx3": (v, 3), "symmetry_V": (v,), "landmarks_68": (68,),
            "offset_3": (3,), "unit_scale": ()}
  for f, shp in expect.items():
    if getattr(model, f).shape != shp:
      raise ModelFormatError(f"{path}: field {f} has shape {getattr(model, f).shape}, expected {shp}")
  if model.id_basis_KxVx3.shape[1:] != (v, 3) or model.exp_basis_ExVx3.shape[1:] != (v, 3):
    raise ModelFormatError(f"{path}: bases do not match the mean's {v} vertices")
  return model
