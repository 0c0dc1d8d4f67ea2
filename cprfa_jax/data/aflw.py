"""AFLW (21 points) in 3DDFA's benchmark layout, written as a tfds test set framed like the
project's training data; and AFLW2000-3D's re-annotated landmarks mapped onto its tfds set.

Layout (`../shared/data-formats.md` §4; 3DDFA's `benchmark_aflw.py` and `test.configs/`):

    ROOT/AFLW_GT_crop/            one face crop per test face (3DDFA's are 120 x 120)
    ROOT/AFLW_GT_crop.list        optional: the crops' file names in index order (3DDFA's
                                  `DDFATestDataset` reads line i as face i); without it, the
                                  sorted file names of AFLW_GT_crop/ are the index order
    ANN/AFLW_GT_pts21.npy         (N, 2, 21) float32, x row, y row; -1 = not annotated
    ANN/AFLW_GT_pts68.npy         (N, 2, 68) 3DDFA's fitted 68 points (only the normaliser)
    ANN/AFLW_GT_crop_yaws.npy     (N,) degrees (only |yaw| is used: the bins)
    ANN/AFLW_GT_crop_roi_box.npy  (N, 4) sx, sy, ex, ey: where crop i lies in its photo

The points are in the photo's pixels. 3DDFA scores a prediction p made on crop i (W x H) as
the photo point `p * (ex - sx) / W + sx` (and y alike); we invert exactly that map, so a
prediction that 3DDFA scores 0 scores 0 here. Then the crop is framed as `data.real` frames
every set: a square of `box_scale` x the longer side of the 68-point box, centred, zero-padded,
resized to `image_size`. Stored per example (tfds, split "test"):

    image (S, S, 3) uint8 | points (21, 2) float32 crop pixels, NaN where not annotated |
    points_valid (21,) bool | box_points (68, 2) float32, the 68-point normaliser |
    yaw () float32 degrees | index () int32, the row in the arrays

with metadata `protocol = "aflw21"` (how `evaluate.py` recognises the set).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import cv2
import numpy as np

from cprfa_jax.data import benchmark, crops, real
from cprfa_jax.data.crops import ExampleError

FILES = {"pts21": "AFLW_GT_pts21.npy", "pts68": "AFLW_GT_pts68.npy",
         "yaw": "AFLW_GT_crop_yaws.npy", "roi": "AFLW_GT_crop_roi_box.npy"}
SHAPES = {"pts21": (2, 21), "pts68": (2, 68), "yaw": (), "roi": (4,)}
CROP_DIR, LIST_FILE = "AFLW_GT_crop", "AFLW_GT_crop.list"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def spec(image_size: int) -> dict:
  return {"image": ((image_size, image_size, 3), np.uint8), "points": ((21, 2), np.float32),
          "points_valid": ((21,), np.bool_), "box_points": ((68, 2), np.float32),
          "yaw": ((), np.float32), "index": ((), np.int32)}


# --- shared by the benchmark readers (this module and `data.cofw`) ----------------------------


def read_image(path) -> np.ndarray:
  """RGB uint8 (H, W, 3) from an image file (grayscale files are repeated to 3 channels)."""
  path = pathlib.Path(path)
  if path.suffix.lower() in (".jpg", ".jpeg"):
    return real.load_image(path)        # also catches a truncated JPEG
  try:
    data = np.frombuffer(path.read_bytes(), np.uint8)
  except OSError as e:
    raise ExampleError(f"{path}: cannot read ({e})") from e
  bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
  if bgr is None:
    raise ExampleError(f"{path}: unreadable image (OpenCV cannot decode it)")
  return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# --- AFLW -------------------------------------------------------------------------------------


def load_arrays(ann_dir) -> dict:
  """The four arrays, validated: {pts21, pts68, yaw, roi} as float64. Raises ExampleError
  naming the file for a missing or unreadable file, a wrong shape, NaN, a count mismatch or an
  empty roi box."""
  ann_dir = pathlib.Path(ann_dir)
  out = {}
  for key, fname in FILES.items():
    path = ann_dir / fname
    if not path.is_file():
      raise ExampleError(f"{path}: missing (3DDFA's test.configs/{fname})")
    try:
      a = np.load(path, allow_pickle=False)
    except Exception as e:  # numpy raises several types for a damaged file
      raise ExampleError(f"{path}: unreadable .npy ({type(e).__name__}: {e})") from e
    if a.ndim != 1 + len(SHAPES[key]) or a.shape[1:] != SHAPES[key]:
      want = "(N" + "".join(f", {d}" for d in SHAPES[key]) + ")"
      raise ExampleError(f"{path}: shape {a.shape}, expected {want}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
      bad = np.flatnonzero(~np.isfinite(a.reshape(len(a), -1)).all(1))
      raise ExampleError(f"{path}: NaN or inf in rows {bad[:5].tolist()}")
    out[key] = a
  counts = {FILES[k]: len(v) for k, v in out.items()}
  if len(set(counts.values())) != 1:
    raise ExampleError(f"{ann_dir}: the arrays disagree on the number of faces: {counts}")
  roi = out["roi"]
  empty = np.flatnonzero((roi[:, 2] <= roi[:, 0]) | (roi[:, 3] <= roi[:, 1]))
  if empty.size:
    raise ExampleError(f"{ann_dir / FILES['roi']}: empty box (ex <= sx or ey <= sy) in rows "
                       f"{empty[:5].tolist()}")
  return out


def image_paths(root, n: int) -> tuple[list[pathlib.Path], str]:
  """The n crop files in index order and how the order was decided."""
  root = pathlib.Path(root)
  crop_dir = root / CROP_DIR
  if not crop_dir.is_dir():
    raise ExampleError(f"{crop_dir}: no such directory (3DDFA's test.data/{CROP_DIR})")
  listing = root / LIST_FILE
  if listing.is_file():
    names = [ln.strip() for ln in listing.read_text().splitlines() if ln.strip()]
    paths = [crop_dir / pathlib.Path(nm).name if not (root / nm).is_file() else root / nm
             for nm in names]
    source, order = listing, f"{LIST_FILE} (line i = face i)"
  else:
    paths = sorted(p for p in crop_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    source, order = crop_dir, "sorted file names (no AFLW_GT_crop.list)"
  if len(paths) != n:
    raise ExampleError(f"{source}: {len(paths)} images but the arrays hold {n} faces")
  return paths, order


def make_example(path, i: int, arrays: dict, image_size: int, box_scale: float) -> dict:
  image = read_image(path)
  h, w = image.shape[:2]
  sx, sy, ex, ey = arrays["roi"][i]
  # Inverse of 3DDFA's `pts * (ex - sx) / std_size + sx` (benchmark_aflw.calc_nme).
  to_image = lambda p_2xL: ((p_2xL.T - [sx, sy]) * [w / (ex - sx), h / (ey - sy)])
  pts21, pts68 = arrays["pts21"][i], arrays["pts68"][i]
  valid = (pts21[0] != -1) & (pts21[1] != -1)
  if not valid.any():
    raise ExampleError(f"{path}: face {i} has no annotated point in {FILES['pts21']}")
  try:
    crop, to_crop = benchmark.frame(image, to_image(pts68), image_size, box_scale)
  except ExampleError as e:
    raise ExampleError(f"{path}: face {i}: {e}") from None
  points = np.where(valid[:, None], to_crop(to_image(pts21)), np.nan).astype(np.float32)
  return {"image": crop, "points": points, "points_valid": valid,
          "box_points": to_crop(to_image(pts68)), "yaw": np.float32(arrays["yaw"][i]),
          "index": np.int32(i)}


def build(root, out_dir, *, annotations=None, image_size=128, box_scale=2.0, name=None,
          limit=None, on_error="stop", overwrite=False, log=print) -> pathlib.Path:
  """Reads the layout above and writes `name` (default cprfa_aflw_<S>); returns its dir."""
  if on_error not in ("skip", "stop"):
    raise ValueError(f"on_error must be 'skip' or 'stop', got {on_error!r}")
  ann = pathlib.Path(annotations or root)
  arrays = load_arrays(ann)
  paths, order = image_paths(root, len(arrays["roi"]))
  paths = paths[:limit]
  meta = {"source": "aflw", "protocol": "aflw21", "num_points": 21, "root": str(
      pathlib.Path(root).resolve()), "annotations": str(ann.resolve()), "order": order,
          "image_size": image_size, "box_scale": box_scale, "num_files": len(paths),
          "normaliser": "sqrt(w h) of the box of AFLW_GT_pts68 (3DDFA)",
          "yaw": "AFLW_GT_crop_yaws.npy, degrees, the file's sign"}
  skipped = []

  def examples():
    for i, p in enumerate(paths):
      try:
        yield make_example(p, i, arrays, image_size, box_scale)
      except ExampleError as e:
        if on_error == "stop":
          raise
        skipped.append(p.name)
        log(f"skipped: {e}")
    meta.update(num_examples=len(paths) - len(skipped), skipped=skipped)
    log(f"aflw: {len(paths) - len(skipped)} examples from {len(paths)} crops; "
        f"skipped {len(skipped)}")

  return benchmark.write(name or f"cprfa_aflw_{image_size}", examples(), out_dir, spec(image_size), meta,
               overwrite)


# --- AFLW2000-3D against 3DDFA's re-annotated landmarks --------------------------------------


def reannotated_points(source, path, num: int | None = None) -> np.ndarray:
  """3DDFA's `AFLW2000-3D-Reannotated.pts68.npy` ((2000, 2, 68) float32, x row, y row, in the
  450 x 450 photo's 1-based pixels like `pt3d_68`; row i = the i-th image in sorted order, as
  3DDFA's `AFLW2000-3D_crop.list`) on the examples of an AFLW2000-3D tfds set built by
  `data.real`: (num, 68, 2) crop pixels.

  The set keeps neither the photo's landmarks nor the crop, so both are re-derived from the
  archive it was built from (`metadata["root"]`): the sorted `.jpg`/`.mat` pairs, minus the
  `skipped` ones, give each example's row, and its `pt3d_68` the crop (`crops.crop_box`). The
  recomputed crop must reproduce the set's own `landmarks`, or this refuses, naming the file.
  """
  meta = source.metadata
  if meta.get("source") != "aflw2000":
    raise ValueError(f"{source.path}: not an AFLW2000-3D set (metadata source "
                     f"{meta.get('source')!r}); the re-annotated landmarks are for AFLW2000-3D")
  path = pathlib.Path(path).expanduser()
  try:
    re68 = np.load(path, allow_pickle=False)
  except Exception as e:
    raise ValueError(f"{path}: unreadable .npy ({type(e).__name__}: {e})") from e
  if re68.ndim != 3 or re68.shape[1:] not in ((2, 68), (3, 68)):
    raise ValueError(f"{path}: shape {re68.shape}, expected (2000, 2, 68) as 3DDFA's "
                     "AFLW2000-3D-Reannotated.pts68.npy")
  root = pathlib.Path(meta.get("root", ""))
  if not root.is_dir():
    raise ValueError(f"{source.path}: its archive {str(root)!r} (metadata root) is not there; "
                     "the re-annotated landmarks are mapped through the archive's .mat files")
  pairs = real.list_pairs(root, "aflw2000")[:meta.get("num_files")]
  skipped = set(meta.get("skipped", []))
  rows = [(i, stem, mat) for i, (stem, _, mat) in enumerate(pairs)
          if str(stem.relative_to(root)) not in skipped]
  num = len(source) if num is None else num
  if len(rows) < num or len(pairs) > len(re68):
    raise ValueError(f"{path}: {len(re68)} faces; {source.path} was built from {len(pairs)} "
                     f"files of {root} ({len(rows)} kept) and {num} are scored")
  out = np.zeros((num, 68, 2), np.float32)
  size, scale = int(meta["image_size"]), float(meta.get("box_scale", 2.0))
  for j, (i, stem, mat) in enumerate(rows[:num]):
    lm = real.load_annotation(mat, "aflw2000")["pt3d_68"][:2].T - 1.0
    x0, y0, side = crops.crop_box(lm, scale)
    k, b = crops.crop_affine(x0, y0, side, size)
    if not np.allclose(k * lm + b, source[j]["landmarks"], atol=1e-2):
      raise ValueError(f"{mat}: its pt3d_68 does not give example {j}'s landmarks of "
                       f"{source.path}: the archive changed since the set was built")
    out[j] = k * (re68[i, :2].T - 1.0) + b
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description="AFLW (21 points, 3DDFA's benchmark layout) -> a "
                              "cprfa-jax tfds test set (split test)")
  p.add_argument("--root", required=True, help=f"folder holding {CROP_DIR}/ (and {LIST_FILE})")
  p.add_argument("--annotations", help="folder holding the AFLW_GT_*.npy arrays (3DDFA's "
                 "test.configs/); default: --root")
  benchmark.add_build_flags(p, "cprfa_aflw_<image-size>", "faces")
  a = p.parse_args(argv)
  benchmark.run_build(build, a, a.root, annotations=a.annotations)


if __name__ == "__main__":
  sys.exit(main())
