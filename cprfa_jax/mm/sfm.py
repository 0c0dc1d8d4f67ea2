"""Surrey Face Model (SFM, 3448 vertices) reader: eos's files, read with numpy alone.

The files are those of eos's `share/` folder (formats in `../shared/data-formats.md` §3):
`sfm_shape_3448.bin` (cereal binary PCA model), `expression_blendshapes_3448.bin`,
`ibug_to_sfm.txt`, `sfm_model_contours.json` and `sfm_reference_symmetry.txt`. The SFM's raw
frame is already oriented like the canonical one (x toward the subject's left, y up, z toward
the viewer; units are millimetres), so `build_model` only centres and rescales it.

Facts checked on the real files (and asserted in tests/test_mm_sfm.py):

* The PCA "eigenvalues" are variances, not standard deviations: the first is 56502 while the
  face is ~150 mm wide. As variances, one standard deviation of component 1 moves each vertex
  by sqrt(56502 / 3448) = 4 mm RMS; as standard deviations it would be 960 mm. eos's
  `get_rescaled_pca_basis` likewise multiplies the orthonormal basis by sqrt(eigenvalue).
* The 6 expression blendshapes (anger, disgust, fear, happiness, sadness, surprise) are
  displacements added to the mean with weights in [0, 1]; they are not PCA (no std).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import tomllib

import numpy as np
from scipy.spatial import cKDTree

from cprfa_jax.mm.model import N_LANDMARKS, ModelFormatError, MorphableModel, build_model

SHAPE_FILE = "sfm_shape_3448.bin"
EXPRESSION_FILE = "expression_blendshapes_3448.bin"
LANDMARK_FILE = "ibug_to_sfm.txt"
CONTOUR_FILE = "sfm_model_contours.json"
SYMMETRY_FILE = "sfm_reference_symmetry.txt"

# iBUG jaw points are not fixed vertices in eos (it re-picks them per pose from candidate
# lists); we fix one per point for a frontal face. Positions in each 17-entry contour list
# (ordered from the temple down to the chin) for iBUG 1..8 (right list) and 17..10 (left list).
# Chosen by fitting the mean 68-point iBUG shape (openface's dlib alignment template) to the
# 50 fixed landmarks of the SFM mean with a 2D similarity (2.7 mm mean residual) and taking
# the candidate nearest to each mapped jaw point: 0.7-7 mm away, the same positions on both
# sides (right: vertices 356 360 363 388 391 393 21 25; left: 773 777 780 802 805 807 464 466).
_JAW_POSITIONS = (2, 5, 7, 9, 10, 12, 14, 15)
# iBUG 61 and 65, the inner mouth corners, have no SFM vertex. These vertices lie on the lip
# seam 1 mm inside the outer corners (vertices 398, 812) and mirror each other.
_INNER_MOUTH_CORNERS = {61: 3426, 65: 3427}


def load_sfm(directory: str | os.PathLike) -> MorphableModel:
  """Reads the SFM files in `directory` into a canonical `MorphableModel` named "sfm".

  Result: mean (3448, 3); identity basis (63, 3448, 3) = orthonormal PCA basis times
  sqrt(eigenvalue), with `id_std_K` = sqrt(eigenvalue) (63,); expression basis (6, 3448, 3)
  = the blendshapes, std 1; triangles (6736, 3); 68 iBUG landmarks; mirror symmetry map.
  Raises ModelFormatError naming the file for anything missing, truncated or inconsistent.
  """
  d = pathlib.Path(directory)
  if not d.is_dir():
    raise ModelFormatError(
        f"{d}: no such directory; expected the Surrey Face Model files ({SHAPE_FILE}, ...) "
        "from the share/ folder of the eos project")
  mean_Vx3, id_basis_KxVx3, eigenvalues_K, tri_Tx3 = read_shape_model(d / SHAPE_FILE)
  v = mean_Vx3.shape[0]
  exp_basis_ExVx3, _ = read_blendshapes(d / EXPRESSION_FILE, v)
  landmarks_68 = read_landmarks(d / LANDMARK_FILE, d / CONTOUR_FILE, v)
  symmetry_V = read_symmetry(d / SYMMETRY_FILE, mean_Vx3)
  return build_model(mean_Vx3, id_basis_KxVx3, exp_basis_ExVx3, tri_Tx3, landmarks_68,
                     id_std_K=np.sqrt(eigenvalues_K), exp_std_E=np.ones(len(exp_basis_ExVx3)),
                     symmetry_V=symmetry_V, name="sfm", source=str(d))


# ----------------------------------------------------------------------------------------------
# cereal binaries

def _read_bytes(path: pathlib.Path, what: str) -> bytes:
  try:
    return path.read_bytes()
  except FileNotFoundError:
    raise ModelFormatError(f"{path}: no such file; expected {what}") from None
  except OSError as e:
    raise ModelFormatError(f"{path}: cannot read {what}: {e}") from e


class _Cursor:
  """Little-endian reads over a whole file; every error names the file, the field and offset."""

  def __init__(self, path: pathlib.Path, what: str):
    self.path, self.buf, self.pos = path, _read_bytes(path, what), 0

  def error(self, message: str) -> ModelFormatError:
    return ModelFormatError(f"{self.path}: {message}")

  def take(self, dtype: str, count: int, what: str) -> np.ndarray:
    need = np.dtype(dtype).itemsize * count
    # Check before allocating: a corrupt count must give a message, not a MemoryError.
    if self.pos + need > len(self.buf):
      raise self.error(f"truncated: {what} needs {need} bytes at offset {self.pos}, "
                       f"the file has {len(self.buf) - self.pos} left")
    out = np.frombuffer(self.buf, dtype, count, self.pos)
    self.pos += need
    return out

  def scalar(self, dtype: str, what: str) -> int:
    return int(self.take(dtype, 1, what)[0])

  def matrix(self, what: str) -> np.ndarray:
    """cereal matrix: i32 rows, i32 cols, column-major f32 data -> (rows, cols) float64."""
    rows, cols = self.scalar("<i4", f"{what} rows"), self.scalar("<i4", f"{what} cols")
    if rows < 0 or cols < 0:
      raise self.error(f"{what} has negative size {rows}x{cols} at offset {self.pos - 8}")
    data = self.take("<f4", rows * cols, f"{what} ({rows}x{cols} f32)")
    out = data.reshape(cols, rows).T.astype(np.float64)
    if not np.isfinite(out).all():
      raise self.error(f"{what} contains NaN or inf")
    return out

  def expect_end(self, after: str) -> None:
    if self.pos != len(self.buf):
      raise self.error(f"file has {len(self.buf) - self.pos} trailing bytes after {after}; "
                       "expected the file to end there")


def read_shape_model(path: pathlib.Path):
  """`sfm_shape_3448.bin` -> (mean (V, 3), basis (K, V, 3) orthonormal x sqrt(eigenvalue),
  eigenvalues (K,) [variances], triangles (T, 3) 0-based)."""
  f = _Cursor(path, "the SFM shape model (cereal binary, e.g. sfm_shape_3448.bin)")
  version = f.scalar("<u4", "version")
  if version != 1:
    raise f.error(f"expected u32 version 1, got {version}; not an eos MorphableModel file")
  mean = f.matrix("mean")
  n3 = mean.shape[0]
  if mean.shape[1] != 1 or n3 == 0 or n3 % 3:
    raise f.error(f"expected the mean as a (3V, 1) matrix, got {mean.shape}")
  basis = f.matrix("orthonormal PCA basis")
  k = basis.shape[1]
  if basis.shape[0] != n3 or k == 0:
    raise f.error(f"expected the PCA basis as ({n3}, K), got {basis.shape}")
  eigenvalues = f.matrix("eigenvalues")
  if eigenvalues.shape != (k, 1):
    raise f.error(f"expected eigenvalues ({k}, 1), got {eigenvalues.shape}")
  if (eigenvalues <= 0).any():
    raise f.error("eigenvalues (PCA variances) must be positive")
  v = n3 // 3
  tri = _triangles(f, "shape triangles", v)
  # The colour model: eos stores an empty PCA model here; read it whole and drop it.
  for what in ("colour mean", "colour basis", "colour eigenvalues"):
    f.matrix(what)
  _triangles(f, "colour triangles", v)
  n_uv = f.scalar("<u8", "texture coordinate count")
  f.take("<f8", 2 * n_uv, f"{n_uv} texture coordinates (f64 pairs)")
  f.expect_end("the texture coordinates")
  basis_KxVx3 = (basis * np.sqrt(eigenvalues[:, 0])).T.reshape(k, v, 3)
  return mean.reshape(v, 3), basis_KxVx3, eigenvalues[:, 0], tri


def _triangles(f: _Cursor, what: str, v: int) -> np.ndarray:
  n = f.scalar("<u8", f"{what} count")
  tri = f.take("<i4", 3 * n, f"{n} {what} (i32 triples)").reshape(n, 3).astype(np.int64)
  if n and (tri.min() < 0 or tri.max() >= v):
    raise f.error(f"{what} index range [{tri.min()}, {tri.max()}] is outside [0, {v})")
  return tri


def read_blendshapes(path: pathlib.Path, v: int):
  """`expression_blendshapes_3448.bin` -> (displacements (E, V, 3), names [E])."""
  f = _Cursor(path, "the SFM expression blendshapes (cereal binary)")
  count = f.scalar("<u8", "blendshape count")
  if not 0 < count < 1000:
    raise f.error(f"expected a small u64 blendshape count, got {count}")
  names, shapes = [], []
  for i in range(count):
    n = f.scalar("<u8", f"blendshape {i} name length")
    try:
      names.append(f.take("u1", n, f"blendshape {i} name").tobytes().decode("utf-8"))
    except UnicodeDecodeError:
      raise f.error(f"blendshape {i} name is not UTF-8 text") from None
    m = f.matrix(f"blendshape {i} ({names[-1]}) deformation")
    if m.shape != (3 * v, 1):
      raise f.error(f"expected blendshape {names[-1]!r} as ({3 * v}, 1) to match the shape "
                    f"model's {v} vertices, got {m.shape}")
    shapes.append(m.reshape(v, 3))
  f.expect_end(f"{count} blendshapes")
  return np.stack(shapes), names


# ----------------------------------------------------------------------------------------------
# Text files: landmarks, contours, symmetry

def read_landmarks(mapping_path: pathlib.Path, contour_path: pathlib.Path, v: int) -> np.ndarray:
  """The 68 iBUG landmarks (0-based vertex indices, iBUG order) from the mapping and contours."""
  text = _read_bytes(mapping_path, "the iBUG-to-SFM landmark mapping (TOML)")
  try:
    table = tomllib.loads(text.decode("utf-8"))["landmark_mappings"]
    mapping = {int(k): int(val) for k, val in table.items()}
  except (UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as e:
    raise ModelFormatError(
        f"{mapping_path}: expected TOML with a [landmark_mappings] table of "
        f"'iBUG index = vertex index' integers ({type(e).__name__}: {e})") from None
  contour_bytes = _read_bytes(contour_path, "the SFM contour candidates (JSON)")
  try:
    contours = json.loads(contour_bytes)
    sides = [[int(i) for i in contours["model_contour"][f"{s}_contour"]] for s in ("right", "left")]
  except (ValueError, KeyError, TypeError) as e:
    raise ModelFormatError(
        f"{contour_path}: expected JSON {{'model_contour': {{'right_contour': [...], "
        f"'left_contour': [...]}}}} of vertex indices ({type(e).__name__}: {e})") from None
  for side, cand in zip(("right", "left"), sides):
    if len(cand) <= max(_JAW_POSITIONS):
      raise ModelFormatError(f"{contour_path}: {side}_contour has {len(cand)} vertices, "
                             f"expected at least {max(_JAW_POSITIONS) + 1}")
  for i, pos in enumerate(_JAW_POSITIONS):
    mapping.setdefault(1 + i, sides[0][pos])   # iBUG 1..8: subject's right, temple to chin
    mapping.setdefault(17 - i, sides[1][pos])  # iBUG 17..10: subject's left
  for ibug, vertex in _INNER_MOUTH_CORNERS.items():
    mapping.setdefault(ibug, vertex)
  missing = [i for i in range(1, N_LANDMARKS + 1) if i not in mapping]
  if missing:
    raise ModelFormatError(f"{mapping_path}: no vertex for iBUG landmarks {missing}")
  lm = np.array([mapping[i] for i in range(1, N_LANDMARKS + 1)], np.int64)
  if lm.min() < 0 or lm.max() >= v:
    raise ModelFormatError(f"{mapping_path} / {contour_path}: landmark vertex indices "
                           f"[{lm.min()}, {lm.max()}] are outside the model's [0, {v})")
  return lm


def read_symmetry(path: pathlib.Path, mean_Vx3: np.ndarray) -> np.ndarray:
  """Mirror partner of every vertex (V,), 0-based.

  The file lists 1-based partners of the first n (845) vertices only. The others get the
  nearest vertex of the mean mirrored in the symmetry plane, which is fitted to the listed
  pairs (the SFM mean is centred within 0.1 mm, but a fitted plane does not rely on it).
  """
  text = _read_bytes(path, "the SFM reference symmetry list").decode("utf-8", "replace")
  # Line i holds i's partner; the first line also carries a comment after the number.
  first = [re.match(r"\s*(\d+)\b", line) for line in text.splitlines() if line.strip()]
  if not first or any(m is None for m in first):
    raise ModelFormatError(f"{path}: expected one 1-based vertex index at the start of each line")
  ref = np.array([int(m.group(1)) for m in first]) - 1
  n, v = len(ref), len(mean_Vx3)
  if n > v or ref.min() < 0 or ref.max() >= n or (ref[ref] != np.arange(n)).any():
    raise ModelFormatError(f"{path}: expected a symmetric pairing of vertices 1..{n} "
                           f"(n <= {v}), got values in [{ref.min() + 1}, {ref.max() + 1}]")
  p, q = mean_Vx3[:n], mean_Vx3[ref]
  diff = (p - q)[np.linalg.norm(p - q, axis=1) > 1e-9]
  if len(diff) < 3:
    raise ModelFormatError(f"{path}: too few distinct vertex pairs to find the symmetry plane")
  normal = np.linalg.svd(diff, full_matrices=False)[2][0]  # dominant pair direction
  plane = ((p + q) / 2 @ normal).mean()
  mirrored = mean_Vx3 - 2.0 * (mean_Vx3 @ normal - plane)[:, None] * normal
  _, sym = cKDTree(mean_Vx3).query(mirrored)
  sym[:n] = ref
  return sym.astype(np.int64)
