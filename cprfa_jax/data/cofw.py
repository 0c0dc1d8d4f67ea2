"""COFW's 507 test images with Ghiasi & Fowlkes' 68-point re-annotation (COFW-68), written as
a tfds test set framed like the project's training data.

Files (`../shared/data-formats.md` §5):

    COFW_test.mat / COFW_test_color.mat  `IsT`: cell array of the 507 images (uint8, some
                                          grayscale). MATLAB v5 (scipy.io.loadmat) or v7.3
                                          (HDF5: the cells are object references, and every
                                          array is stored transposed: (H, W, 3) as (3, W, H))
    test_annotations/<i>_points.mat       i = 1..507 (1-based index into IsT): `Points` (68, 2)
                                          x, y in 1-based pixels, `Occ` (1, 68) uint8, 1 = occluded
    cofw68_test_bboxes.mat                `bboxes` (507, 4) [x, y, w, h] detector-style boxes

Each image is framed as `data.real` frames every set (a square of `box_scale` x the longer
side of the 68-point box, centred, zero-padded, resized to S). Stored per example:

    image (S, S, 3) uint8 (grayscale repeated) | points (68, 2) float32 crop pixels (0-based) |
    points_valid (68,) bool (all True) | box_points (68, 2) float32 (= points: the 3DDFA
    normaliser is their box) | occluded (68,) bool | face_box (4,) float32 [x0, y0, w, h] in
    crop pixels | index () int32 (0-based)

with metadata `protocol = "cofw68"`: the 51 inner points (iBUG 18-68) are scored, occluded
ones included, with the box normaliser (the paper's, 3DDFA's) and the inter-ocular one (the
benchmark's own); `evaluate.py` reports both.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np
import scipy.io

from cprfa_jax.data.benchmark import add_build_flags, frame, run_build, write
from cprfa_jax.data.crops import ExampleError

ANN_DIR, BOX_FILE = "test_annotations", "cofw68_test_bboxes.mat"


def spec(image_size: int) -> dict:
  return {"image": ((image_size, image_size, 3), np.uint8), "points": ((68, 2), np.float32),
          "points_valid": ((68,), np.bool_), "box_points": ((68, 2), np.float32),
          "occluded": ((68,), np.bool_), "face_box": ((4,), np.float32),
          "index": ((), np.int32)}


def _is_hdf5(path) -> bool:
  with open(path, "rb") as f:   # v7.3 files are HDF5 behind a 512-byte MATLAB header
    f.seek(512)
    return f.read(8) == b"\x89HDF\r\n\x1a\n"


def load_mat(path, key) -> list | np.ndarray:
  """`key` of a MATLAB file, v5 or v7.3: a cell array as a list of arrays (each in MATLAB's
  axis order), a numeric array as an array in MATLAB's shape."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise ExampleError(f"{path}: missing")
  try:
    if _is_hdf5(path):
      import h5py  # pylint: disable=import-outside-toplevel
      with h5py.File(path, "r") as f:
        if key not in f:
          raise ExampleError(f"{path}: missing key {key!r} (has {sorted(f.keys())})")
        d = f[key]
        if d.dtype == h5py.ref_dtype:
          # HDF5's row-major order of the transposed array is MATLAB's column-major order.
          return [np.asarray(f[ref]).T for ref in np.asarray(d).reshape(-1)]
        return np.asarray(d).T
    d = scipy.io.loadmat(path)
  except ExampleError:
    raise
  except Exception as e:  # scipy / h5py raise many types for a damaged file
    raise ExampleError(f"{path}: unreadable .mat ({type(e).__name__}: {e})") from e
  if key not in d:
    raise ExampleError(f"{path}: missing key {key!r}")
  a = d[key]
  return [np.asarray(x) for x in a.reshape(-1, order="F")] if a.dtype == object else a


def to_rgb(image, where: str) -> np.ndarray:
  """A COFW image as RGB uint8 (H, W, 3); grayscale (H, W) or (H, W, 1) is repeated."""
  a = np.asarray(image)
  if a.ndim == 3 and a.shape[2] == 1:
    a = a[..., 0]
  if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)) or min(a.shape[:2]) < 2:
    raise ExampleError(f"{where}: image of shape {a.shape}, expected (H, W) or (H, W, 3)")
  if a.dtype != np.uint8:
    if not np.issubdtype(a.dtype, np.floating) or not np.isfinite(a).all() or a.max() > 1:
      raise ExampleError(f"{where}: image of dtype {a.dtype}, expected uint8 (or float in [0, 1])")
    a = np.round(a * 255).astype(np.uint8)
  return np.repeat(a[..., None], 3, 2) if a.ndim == 2 else a


def load_points(path) -> tuple[np.ndarray, np.ndarray]:
  """(points (68, 2) 0-based pixels, occluded (68,) bool) of one `<i>_points.mat`."""
  pts, occ = load_mat(path, "Points"), load_mat(path, "Occ")
  pts, occ = np.asarray(pts, np.float64), np.asarray(occ)
  if pts.shape != (68, 2):
    raise ExampleError(f"{path}: Points has shape {pts.shape}, expected (68, 2)")
  if occ.size != 68:
    raise ExampleError(f"{path}: Occ has shape {occ.shape}, expected (1, 68)")
  if not np.isfinite(pts).all():
    raise ExampleError(f"{path}: Points holds NaN or inf")
  return pts - 1.0, occ.reshape(-1).astype(bool)


def load_boxes(path, n: int) -> np.ndarray:
  boxes = np.asarray(load_mat(path, "bboxes"), np.float64)
  if boxes.shape == (4, n) and n != 4:
    boxes = boxes.T
  if boxes.shape != (n, 4):
    raise ExampleError(f"{path}: bboxes has shape {boxes.shape}, expected ({n}, 4) for the "
                       f"{n} images")
  if not np.isfinite(boxes).all():
    raise ExampleError(f"{path}: bboxes holds NaN or inf")
  return boxes


def build(images_mat, annotations, boxes_mat, out_dir, *, image_size=128, box_scale=2.0,
          name=None, limit=None, on_error="stop", overwrite=False, log=print) -> pathlib.Path:
  """Reads the files above and writes `name` (default cprfa_cofw68_<S>); returns its dir.
  `annotations`: the `test_annotations/` folder."""
  if on_error not in ("skip", "stop"):
    raise ValueError(f"on_error must be 'skip' or 'stop', got {on_error!r}")
  images = load_mat(images_mat, "IsT")
  if not isinstance(images, list):
    raise ExampleError(f"{images_mat}: IsT is a {images.dtype} array of shape {images.shape}, "
                       "expected a cell array of images")
  n = len(images)
  boxes = load_boxes(boxes_mat, n)
  ann = pathlib.Path(annotations)
  if not ann.is_dir():
    raise ExampleError(f"{ann}: no such directory (the re-annotation's {ANN_DIR}/)")
  extra = [p.name for p in ann.glob("*_points.mat")
           if not p.name.split("_")[0].isdigit() or int(p.name.split("_")[0]) > n]
  if extra:
    raise ExampleError(f"{ann}: {len(extra)} annotation files beyond the {n} images of "
                       f"{images_mat} (e.g. {sorted(extra)[0]})")
  meta = {"source": "cofw", "protocol": "cofw68", "num_points": 51,
          "images": str(pathlib.Path(images_mat).resolve()), "annotations": str(ann.resolve()),
          "boxes": str(pathlib.Path(boxes_mat).resolve()), "image_size": image_size,
          "box_scale": box_scale, "num_files": min(n, limit or n),
          "normalisers": {"box": "sqrt(w h) of the 68 ground-truth points' box (3DDFA, the paper)",
                          "interocular": "mean of iBUG 37-42 to mean of 43-48 (COFW-68's script)"},
          "occluded_points": "included"}
  skipped = []

  def examples():
    for i in range(min(n, limit or n)):
      where = f"{images_mat}: IsT{{{i + 1}}}"
      try:
        pts, occ = load_points(ann / f"{i + 1}_points.mat")
        image = to_rgb(images[i], where)
        crop, to_crop = frame(image, pts, image_size, box_scale)
        x, y, w, h = boxes[i]
        corners = to_crop([[x - 1, y - 1], [x - 1 + w, y - 1 + h]])
        points = to_crop(pts)
      except ExampleError as e:
        if on_error == "stop":
          raise
        skipped.append(i + 1)
        log(f"skipped: {e}")
        continue
      yield {"image": crop, "points": points, "points_valid": np.ones(68, bool),
             "box_points": points, "occluded": occ,
             "face_box": np.concatenate([corners[0], corners[1] - corners[0]]).astype(np.float32),
             "index": np.int32(i)}
    meta.update(num_examples=meta["num_files"] - len(skipped), skipped=skipped)
    log(f"cofw68: {meta['num_examples']} examples from {meta['num_files']} images; "
        f"skipped {len(skipped)}")

  return write(name or f"cprfa_cofw68_{image_size}", examples(), out_dir, spec(image_size),
               meta, overwrite)


def main(argv=None):
  p = argparse.ArgumentParser(description="COFW-68 (507 test images, 68 points) -> a "
                              "cprfa-jax tfds test set (split test)")
  p.add_argument("--images", required=True, help="COFW_test_color.mat or COFW_test.mat (v5 or v7.3)")
  p.add_argument("--annotations", required=True, help=f"the {ANN_DIR}/ folder of <i>_points.mat")
  p.add_argument("--boxes", required=True, help=BOX_FILE)
  add_build_flags(p, "cprfa_cofw68_<image-size>", "images")
  a = p.parse_args(argv)
  run_build(build, a, a.images, a.annotations, a.boxes)


if __name__ == "__main__":
  sys.exit(main())
