"""Format-exact fixtures of the AFLW and COFW-68 benchmark files (data-formats §4, §5), built by
the tests (never real data).

* `face68(centre, size, rng)`: a rough iBUG 68-point face layout, 0-based pixels (68, 2);
* `write_aflw(root, n, rng)`: 3DDFA's layout: `AFLW_GT_crop/*.jpg` (120 x 120 crops),
  `AFLW_GT_crop.list`, and the four `AFLW_GT_*.npy` arrays, the points in the photo's frame
  (`crop point * (ex - sx) / 120 + sx`, 3DDFA's map), some of the 21 not annotated (-1);
* `write_cofw(root, n, rng, version)`: `COFW_test_color.mat` (`IsT`, MATLAB v5 or v7.3 HDF5 with
  object references and transposed arrays; image 1 grayscale), `test_annotations/<i>_points.mat`
  (1-based `Points`, `Occ`) and `cofw68_test_bboxes.mat`.

Every image is black but for a white disc at the nose tip (iBUG 31), so a test can see where
the reader put that point.
"""

from __future__ import annotations

import pathlib

import cv2
import h5py
import numpy as np
import scipy.io

NOSE = 30                       # iBUG 31, 0-based
AFLW21_NOSE = 14                # AFLW's 21 points: the 15th is iBUG 31
CROP = 120                      # 3DDFA's crop size (std_size)


def face68(centre, size, rng=None, noise=0.01) -> np.ndarray:
  """A rough iBUG layout (jaw, brows, nose, eyes, mouth) of width `size`, y down: (68, 2)."""
  t = np.linspace(np.pi, 0, 17)
  jaw = np.stack([np.cos(t), 0.1 + 0.9 * np.sin(t)], -1)
  brows = np.concatenate([np.stack([np.linspace(a, b, 5), np.full(5, -0.55)], -1)
                          for a, b in ((-0.8, -0.15), (0.15, 0.8))])
  nose = np.concatenate([np.stack([np.zeros(4), np.linspace(-0.35, 0.1, 4)], -1),
                         np.stack([np.linspace(-0.2, 0.2, 5), np.full(5, 0.2)], -1)])
  ring = lambda cx, cy, rx, ry, k: np.stack([cx + rx * np.cos(np.linspace(np.pi, -np.pi, k, endpoint=False)),
                                             cy + ry * np.sin(np.linspace(np.pi, -np.pi, k, endpoint=False))], -1)
  eyes = np.concatenate([ring(-0.4, -0.3, 0.15, 0.06, 6), ring(0.4, -0.3, 0.15, 0.06, 6)])
  mouth = np.concatenate([ring(0, 0.55, 0.35, 0.12, 12), ring(0, 0.55, 0.2, 0.05, 8)])
  pts = np.concatenate([jaw, brows, nose, eyes, mouth])
  assert pts.shape == (68, 2)
  if rng is not None:
    pts = pts + rng.normal(0, noise, pts.shape)
  return np.asarray(centre, np.float64) + size / 2 * pts


def marked_image(h, w, nose_xy, gray=False) -> np.ndarray:
  img = np.zeros((h, w) if gray else (h, w, 3), np.uint8)
  cv2.circle(img, tuple(int(round(v)) for v in nose_xy), 3, 255 if gray else (255, 255, 255), -1)
  return img


def groups21(p68_2x68) -> np.ndarray:
  """The 21 points from 68 (3DDFA's `ind_68to21`), written out independently: (2, 21)."""
  idx = [[18], [20], [22], [23], [25], [27], [37], list(range(37, 43)), [40], [43],
         list(range(43, 49)), [46], [3], [32], [31], [36], [15], [49], list(range(61, 69)),
         [55], [9]]
  return np.stack([p68_2x68[:, np.asarray(g) - 1].mean(1) for g in idx], 1)


def write_aflw(root, n=4, rng=None, with_list=True) -> dict:
  """3DDFA's AFLW benchmark layout under `root`; returns the arrays, the crop-frame 68 points
  (`crop68`, (n, 68, 2)) and the file names in index order."""
  rng = rng or np.random.default_rng(0)
  root = pathlib.Path(root)
  (root / "AFLW_GT_crop").mkdir(parents=True, exist_ok=True)
  names, crop68, pts68, pts21, rois = [], [], [], [], []
  for i in range(n):
    c68 = face68(rng.uniform(55, 65, 2), rng.uniform(60, 75), rng)
    side = int(rng.integers(150, 300))
    sx, sy = (int(v) for v in rng.integers(20, 200, 2))
    roi = np.array([sx, sy, sx + side, sy + side])
    p68 = (c68 * side / CROP + [sx, sy]).T
    p21 = groups21(p68)
    p21[:, rng.choice(21, 3, replace=False)] = -1.0      # not annotated
    if i == 0:
      p21[1, 16] = -1.0                                   # one coordinate missing: not valid
      p21[:, AFLW21_NOSE] = groups21(p68)[:, AFLW21_NOSE]
    name = f"image{1000 + 7 * i:05d}.jpg"                 # list order != sorted order below
    cv2.imwrite(str(root / "AFLW_GT_crop" / name), marked_image(CROP, CROP, c68[NOSE]))
    names.append(name), crop68.append(c68), pts68.append(p68), pts21.append(p21), rois.append(roi)
  order = list(range(n))[::-1] if with_list else sorted(range(n), key=lambda i: names[i])
  arrays = {"AFLW_GT_pts21.npy": np.float32(pts21)[order], "AFLW_GT_pts68.npy": np.float32(pts68)[order],
            "AFLW_GT_crop_yaws.npy": np.float32([5.0, -45.0, 75.0, 95.0][:n] + [10.0] * max(0, n - 4))[order],
            "AFLW_GT_crop_roi_box.npy": np.uint16(rois)[order]}
  for fname, a in arrays.items():
    np.save(root / fname, a)
  if with_list:
    (root / "AFLW_GT_crop.list").write_text("".join(names[i] + "\n" for i in order))
  return {"arrays": arrays, "crop68": np.float64(crop68)[order], "names": [names[i] for i in order]}


def _savemat73(path, arrays: dict, cells: dict) -> None:
  """A MATLAB v7.3 file as MATLAB writes it: HDF5 after a 512-byte header, every array
  transposed, a cell array as a dataset of object references into `#refs#`."""
  with h5py.File(path, "w", userblock_size=512) as f:
    refs = f.create_group("#refs#")
    for key, items in cells.items():
      ds = f.create_dataset(key, (1, len(items)), dtype=h5py.ref_dtype)   # MATLAB (n, 1)
      ds.attrs["MATLAB_class"] = np.bytes_("cell")
      for j, a in enumerate(items):
        r = refs.create_dataset(f"{key}_{j}", data=np.asarray(a).T)
        r.attrs["MATLAB_class"] = np.bytes_("uint8")
        ds[0, j] = r.ref
    for key, a in arrays.items():
      f.create_dataset(key, data=np.asarray(a).T).attrs["MATLAB_class"] = np.bytes_("double")
  with open(path, "r+b") as f:
    f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: fixture HDF5 schema 1.00 .".ljust(512, b" "))


def write_cofw(root, n=3, rng=None, version="v5") -> dict:
  """COFW-68's files under `root`; returns the 0-based points (n, 68, 2), occlusion, boxes."""
  rng = rng or np.random.default_rng(1)
  root = pathlib.Path(root)
  (root / "test_annotations").mkdir(parents=True, exist_ok=True)
  images, pts, occs, boxes = [], [], [], []
  for i in range(n):
    h, w = int(rng.integers(90, 140)), int(rng.integers(90, 160))
    p = face68([w / 2 + rng.uniform(-5, 5), h / 2 + rng.uniform(-5, 5)], rng.uniform(40, 60), rng)
    images.append(marked_image(h, w, p[NOSE], gray=(i == 1)))
    occ = (rng.random(68) < 0.3).astype(np.uint8)
    scipy.io.savemat(root / "test_annotations" / f"{i + 1}_points.mat",
                     {"Points": p + 1.0, "Occ": occ[None]})
    lo, hi = p.min(0), p.max(0)
    boxes.append([lo[0] + 1, lo[1] + 1, hi[0] - lo[0], hi[1] - lo[1]])
    pts.append(p), occs.append(occ.astype(bool))
  boxes = np.int16(np.round(boxes))
  scipy.io.savemat(root / "cofw68_test_bboxes.mat", {"bboxes": boxes})
  path = root / "COFW_test_color.mat"
  if version == "v5":
    cell = np.empty((n, 1), object)
    for i, im in enumerate(images):
      cell[i, 0] = im
    scipy.io.savemat(path, {"IsT": cell, "bboxesT": np.zeros((n, 4)), "phisT": np.zeros((n, 87))})
  else:
    _savemat73(path, {"bboxesT": np.zeros((n, 4)), "phisT": np.zeros((n, 87))}, {"IsT": images})
  return {"points": np.float64(pts), "occluded": np.array(occs), "boxes": boxes,
          "images": images, "paths": {"images": path, "annotations": root / "test_annotations",
                                      "boxes": root / "cofw68_test_bboxes.mat"}}
