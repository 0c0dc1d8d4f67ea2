"""AFLW2000-3D and 300W-LP from the user's extracted archives, in the example schema.

Each `imageXXXXX.jpg` has an `imageXXXXX.mat` beside it (keys: `../shared/data-formats.md` §1).
One example is made as follows, all on the host except the model geometry (jitted JAX):

* pose: `Pose_Para` -> `pose_6` of the 450x450 image (`geometry.pose_from_pose_para`, which
  needs the user's BFM: its canonical frame); alpha: `Shape_Para` / `Exp_Para` divided by the
  model's std (`mm.params_from_300wlp`), truncated to the model's K, E.
* landmarks (pixels of the full image): AFLW2000-3D from `pt3d_68` x, y (the field's
  evaluation ground truth; 1-based, y already down, so minus 1); 300W-LP from the model's 68
  landmark vertices projected with the pose, which keeps landmarks, pose, alpha and the DAFI
  exactly consistent (`pt2d` is 2D-style, its jaw points on the visible silhouette).
* crop: a square of side `box_scale` x the longer side of the landmark box, centred on it,
  integer-aligned and zero-padded outside the image, resized to `image_size` (INTER_AREA).
  Pixel p maps to k p + b, so normalised coordinates scale by k f / f' and shift: the pose's
  s and t follow (`crop_pose`). box_scale 2 makes a frontal face about half the crop wide,
  where the paper's initial pose p0 = [0, 0, 0, 1, 0, 0] puts the mean face (`mm.model`).
* landmarks_visible: front-facing landmark vertices (`geometry.front_facing`, normals only).
* yaw: `-degrees(Pose_Para[1])`: the file's magnitude, so the |yaw| bins are those of the
  published protocol, with the sign of our r_y (for a pure yaw r_y = -Pose_Para yaw, since
  `Pose_Para` uses transposed rotations), so every data set shares one sign convention.
* dafi, mask: `render_fn(model, verts_Vx3, pose_6, (S, S)) -> (dafi_SxSx3, mask_SxS)`.

A missing or corrupt jpg or .mat, or a bad value in it (NaN, wrong shape), is an
`ExampleError` naming the file: skipped and counted (`on_error="skip"`) or raised ("stop").
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import sys

import cv2
import jax
import numpy as np
import scipy.io

from cprfa_jax.data import schema, tfds_io
from cprfa_jax.data.crops import (
  ExampleError,
  crop_affine,
  crop_box,
  crop_pose,
  crop_resize,
)
from cprfa_jax.geometry.projection import (
  front_facing,
  pose_from_pose_para,
  project,
  to_pixels,
)
from cprfa_jax.mm.bfm import load_bfm_3ddfa, params_from_300wlp
from cprfa_jax.mm.model import ModelFormatError
from cprfa_jax.mm.model import shape as mm_shape

DATASETS = {"aflw2000": "test", "300wlp": "train"}  # dataset -> default split
# .mat key -> size; every one is checked finite. pt3d_68 only where it is the ground truth.
_KEYS = {"Pose_Para": 7, "Shape_Para": 199, "Exp_Para": 29}
RAW_SPEC = {"pose_para": ((7,), np.float32), "shape_para": ((199,), np.float32),
            "exp_para": ((29,), np.float32)}


def list_pairs(root, dataset: str, include_flip: bool = True):
  """Sorted [(stem path, jpg or None, mat or None)] under `root`; AFLW2000-3D is one flat
  folder, 300W-LP has subject folders (AFW, HELEN, ...; `*_Flip` mirrored copies) and a
  `landmarks/` folder of other annotations, which is left out."""
  root = pathlib.Path(root)
  if not root.is_dir():
    raise FileNotFoundError(f"{root}: no such directory (the extracted {dataset} archive)")
  files = root.glob("*") if dataset == "aflw2000" else root.rglob("*")
  pairs = {}
  for p in files:
    rel = p.relative_to(root).parts
    if dataset == "300wlp" and (rel[0] == "landmarks" or
                                (not include_flip and rel[0].endswith("_Flip"))):
      continue
    if p.suffix.lower() in (".jpg", ".mat") and p.is_file():
      pairs.setdefault(p.with_suffix(""), {})[p.suffix.lower()] = p
  if not pairs:
    raise FileNotFoundError(f"{root}: no .jpg/.mat files; is it the extracted {dataset} folder?")
  return [(stem, d.get(".jpg"), d.get(".mat")) for stem, d in sorted(pairs.items())]


def load_annotation(mat_path, dataset: str) -> dict:
  """The .mat arrays this reader uses, validated: {key: float64 array}."""
  try:
    d = scipy.io.loadmat(mat_path)
  except Exception as e:  # scipy raises many types for a damaged file: all mean "unreadable"
    raise ExampleError(f"{mat_path}: unreadable .mat ({type(e).__name__}: {e})") from e
  keys = dict(_KEYS, **({"pt3d_68": 3 * 68} if dataset == "aflw2000" else {}))
  out = {}
  for key, size in keys.items():
    if key not in d:
      raise ExampleError(f"{mat_path}: missing key {key!r}")
    a = np.asarray(d[key], np.float64)
    if a.size != size or (key == "pt3d_68" and a.shape != (3, 68)):
      raise ExampleError(f"{mat_path}: {key} has shape {a.shape}, expected {size} values")
    if not np.isfinite(a).all():
      raise ExampleError(f"{mat_path}: {key} holds NaN or inf")
    out[key] = a if key == "pt3d_68" else a.reshape(-1)
  if out["Pose_Para"][6] <= 0:
    raise ExampleError(f"{mat_path}: Pose_Para scale {out['Pose_Para'][6]} is not positive")
  return out


def load_image(jpg_path) -> np.ndarray:
  """RGB uint8 (H, W, 3). A truncated JPEG decodes to a grey-filled image without an error
  from OpenCV, so the end-of-image marker is checked too."""
  try:
    data = pathlib.Path(jpg_path).read_bytes()
  except OSError as e:
    raise ExampleError(f"{jpg_path}: cannot read ({e})") from e
  if data[:2] != b"\xff\xd8" or b"\xff\xd9" not in data[-64:]:
    raise ExampleError(f"{jpg_path}: not a complete JPEG (missing start or end marker)")
  bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
  if bgr is None:
    raise ExampleError(f"{jpg_path}: corrupt JPEG (OpenCV cannot decode it)")
  return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@functools.partial(jax.jit, static_argnames="hw")
def _model_geometry(model, pose_para_7, shape_para, exp_para, hw):
  """Pose, alpha, vertices, landmark pixels and visibility on the full (H, W) image."""
  pose_6 = pose_from_pose_para(pose_para_7, model.offset_3, model.unit_scale, hw)
  alpha_id, alpha_exp = params_from_300wlp(model, shape_para, exp_para)
  verts_Vx3 = mm_shape(model, alpha_id, alpha_exp)
  lm_px = to_pixels(project(verts_Vx3[model.landmarks_68], pose_6), hw)
  visible = front_facing(verts_Vx3, model.triangles_Tx3, pose_6)[model.landmarks_68]
  return pose_6, alpha_id, alpha_exp, verts_Vx3, lm_px, visible


def make_example(jpg_path, mat_path, dataset, model, render_fn, image_size=128, box_scale=2.0,
                 raw_params=False) -> dict:
  """One schema example (plus `RAW_SPEC` keys if `raw_params`); ExampleError names the file."""
  ann = load_annotation(mat_path, dataset)
  image = load_image(jpg_path)
  hw = image.shape[:2]
  pose, alpha_id, alpha_exp, verts, lm_px, visible = _model_geometry(
      model, ann["Pose_Para"], ann["Shape_Para"], ann["Exp_Para"], hw)
  lm_px = ann["pt3d_68"][:2].T - 1.0 if dataset == "aflw2000" else np.asarray(lm_px, np.float64)
  try:
    x0, y0, side = crop_box(lm_px, box_scale)
  except ExampleError as e:
    raise ExampleError(f"{mat_path}: {e}") from None
  k, b = crop_affine(x0, y0, side, image_size)
  pose_crop = crop_pose(pose, hw, k, b, (image_size, image_size)).astype(np.float32)
  dafi, mask = render_fn(model, verts, pose_crop, (image_size, image_size))
  dafi, mask = np.asarray(dafi, np.float32), np.asarray(mask, bool)
  if (dafi.shape != (image_size, image_size, 3) or mask.shape != dafi.shape[:2]
      or not np.isfinite(dafi).all()):
    raise ValueError(f"render_fn returned dafi {dafi.shape} (finite: {np.isfinite(dafi).all()})"
                     f" and mask {mask.shape} for an image of {(image_size, image_size)}")
  ex = {"image": crop_resize(image, x0, y0, side, image_size), "dafi": dafi, "mask": mask,
        "alpha_id": np.asarray(alpha_id, np.float32),
        "alpha_exp": np.asarray(alpha_exp, np.float32), "pose": pose_crop,
        "landmarks": (k * lm_px + b).astype(np.float32),
        "landmarks_visible": np.asarray(visible, bool),
        "yaw": np.float32(-np.degrees(ann["Pose_Para"][1]))}
  if raw_params:
    ex.update(pose_para=ann["Pose_Para"], shape_para=ann["Shape_Para"], exp_para=ann["Exp_Para"])
    ex.update({k_: ex[k_].astype(np.float32) for k_ in RAW_SPEC})
  return ex


class ArchiveReader:
  """Iterates one extracted archive in sorted file order, yielding schema examples.

  on_error: "skip" reports each bad file (`log`) and counts it in `skipped`
  [(path, reason)], with a summary at the end; "stop" raises the first `ExampleError`.
  """

  def __init__(self, dataset, root, model, render_fn=None, *, image_size=128, box_scale=2.0,
               on_error="stop", include_flip=True, raw_params=False, limit=None, log=print):
    if dataset not in DATASETS:
      raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
    if render_fn is None:
      raise ValueError("render_fn is required: real examples carry a ground-truth DAFI and mask "
                       "rendered from the annotated model, e.g. cprfa_jax.render's DAFI renderer")
    if on_error not in ("skip", "stop"):
      raise ValueError(f"on_error must be 'skip' or 'stop', got {on_error!r}")
    self.dataset, self.root, self.model = dataset, pathlib.Path(root), model
    self.render_fn = render_fn
    self.image_size, self.box_scale, self.on_error = image_size, box_scale, on_error
    self.raw_params, self.log = raw_params, log
    self.pairs = list_pairs(root, dataset, include_flip)[:limit]
    self.skipped: list[tuple[str, str]] = []
    self.num_written = 0

  def __len__(self) -> int:
    return len(self.pairs)

  def spec(self):
    spec = schema.feature_spec((self.image_size,) * 2, self.model.num_id, self.model.num_exp)
    return dict(spec, **RAW_SPEC) if self.raw_params else spec

  def __iter__(self):
    self.skipped, self.num_written = [], 0
    for stem, jpg, mat in self.pairs:
      try:
        if jpg is None or mat is None:
          raise ExampleError(f"{stem}.{'jpg' if jpg is None else 'mat'}: missing (its "
                             f"{'.mat' if jpg is None else '.jpg'} exists)")
        ex = make_example(jpg, mat, self.dataset, self.model, self.render_fn, self.image_size,
                          self.box_scale, self.raw_params)
      except ExampleError as e:
        if self.on_error == "stop":
          raise
        self.skipped.append((str(stem.relative_to(self.root)), str(e)))
        self.log(f"skipped: {e}")
        continue
      except Exception as e:  # a bug, not bad data: stop, but say which file triggered it
        e.add_note(f"while converting {stem}.jpg / .mat")
        raise
      self.num_written += 1
      yield ex
    self.log(f"{self.dataset}: {self.num_written} examples from {len(self.pairs)} files under "
             f"{self.root}; skipped {len(self.skipped)}")


def default_render_fn():
  """`render_fn` from the project's z-buffer renderer, imported lazily (a heavier module)."""
  try:
    from cprfa_jax.render import render  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise RuntimeError(f"the DAFI renderer cprfa_jax.render.render is not available ({e})") from e

  def render_dafi(model, verts_Vx3, pose_6, hw):
    out = render(model, verts_Vx3, pose_6, hw)
    return out.dafi, out.mask
  return render_dafi


def build(dataset, root, model, out_dir, *, render_fn, name=None, split=None, image_size=128,
          box_scale=2.0, on_error="stop", include_flip=True, raw_params=True, limit=None,
          encoding="bytes", overwrite=False, log=print):
  """Reads an archive and writes it with `tfds_io.write_dataset`; returns the dataset dir."""
  reader = ArchiveReader(dataset, root, model, render_fn, image_size=image_size,
                         box_scale=box_scale, on_error=on_error, include_flip=include_flip,
                         raw_params=raw_params, limit=limit, log=log)
  meta = {"source": dataset, "root": str(pathlib.Path(root).resolve()), "model": model.name,
          "num_vertices": model.num_vertices, "num_id": model.num_id, "num_exp": model.num_exp,
          "image_size": image_size, "box_scale": box_scale, "num_files": len(reader),
          "landmarks": "pt3d_68" if dataset == "aflw2000" else "projected model landmarks",
          "yaw": "-degrees(Pose_Para[1]): the file's magnitude, r_y's sign"}

  def examples():
    yield from reader
    meta.update(num_examples=reader.num_written, skipped=[p for p, _ in reader.skipped])

  return tfds_io.write_dataset(
      name or f"cprfa_{dataset}_{image_size}", examples(), out_dir, reader.spec(),
      split=split or DATASETS[dataset], metadata=meta, encoding=encoding, overwrite=overwrite,
      description=f"{dataset} from {root} in the cprfa-jax example schema")


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--dataset", choices=sorted(DATASETS), required=True)
  p.add_argument("--root", required=True, help="the extracted archive folder")
  p.add_argument("--bfm", required=True, help="3DDFA-layout BFM (.mat/.npz/.pkl) with w_shp, "
                 "w_exp, u, tri, keypoints, sigma")
  p.add_argument("--out", required=True, help="tfds data_dir to write into")
  p.add_argument("--name", help="dataset name (default cprfa_<dataset>_<image-size>)")
  p.add_argument("--split", help="default: test for aflw2000, train for 300wlp")
  p.add_argument("--image-size", type=int, default=128)
  p.add_argument("--box-scale", type=float, default=2.0)
  p.add_argument("--on-error", choices=("skip", "stop"), default="stop")
  p.add_argument("--no-flip", action="store_true", help="300W-LP: leave out the *_Flip folders")
  p.add_argument("--no-raw-params", action="store_true",
                 help="do not also keep Pose_Para, Shape_Para, Exp_Para")
  p.add_argument("--limit", type=int, help="only the first N files (a quick try)")
  p.add_argument("--compress", action="store_true", help="zlib: smaller, slower to write")
  p.add_argument("--overwrite", action="store_true")
  a = p.parse_args(argv)
  try:
    out = build(a.dataset, a.root, load_bfm_3ddfa(a.bfm), a.out, render_fn=default_render_fn(),
                name=a.name, split=a.split, image_size=a.image_size, box_scale=a.box_scale,
                on_error=a.on_error, include_flip=not a.no_flip,
                raw_params=not a.no_raw_params, limit=a.limit,
                encoding="zlib" if a.compress else "bytes", overwrite=a.overwrite)
  except (OSError, ExampleError, ModelFormatError, RuntimeError) as e:  # user errors: no traceback
    sys.exit(f"error: {e}")
  print(f"wrote {out}")


if __name__ == "__main__":
  sys.exit(main())
