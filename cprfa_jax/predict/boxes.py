"""Face boxes for the predictor: read from the user's files, checked, or found by OpenCV's Haar
cascades as a fallback.

A box is [x0, y0, x1, y1] in photo pixels (x right, y down, 0-based): the bounding box of the
face's 68 landmarks, the box `data.real` crops around. Files (`../shared/data-formats.md`):

* boxes: CSV with the header exactly `image,x0,y0,x1,y1`, one row per face in the image's face
  order; or JSON `{"NAME.jpg": [[x0, y0, x1, y1], ...]}`.
* landmarks: JSON `{"NAME.jpg": [[[x, y] * 68], ...]}`, iBUG 68 order, photo pixels.

Haar fallback (`detect_faces`): the frontal cascade, and the profile cascade on the photo and on
its mirror image (the cascade knows one side only), merged by non-maximum suppression. A
detector box is not a landmark box: `detector_to_landmark_box` maps it by an affine rule per
cascade, centre c -> c + (dx w, dy h), size (w, h) -> (sx w, sy h), with the constants in
`RULES`, fitted by least squares in `benchmarks/haar_box_rule.py` on synthetic renders
(`sampler.generate` faces at known places in larger canvases, detections paired with the true
landmark boxes by IoU; `benchmarks/RESULTS.md`, "Haar face box -> 68-landmark box").

OpenCV 5 dropped `CascadeClassifier` and its cascade files from the Python wheels; with it
`detect_faces` raises a BoxError telling the user to pass --boxes / --landmarks (or to install
opencv-python-headless<5). The measurement ran with OpenCV 4.14.
"""

from __future__ import annotations

import csv
import json
import math
import os

import cv2
import numpy as np

MIN_BOX_SIDE = 8.0    # px: smaller boxes hold no face the networks can fit
CSV_HEADER = ["image", "x0", "y0", "x1", "y1"]
CASCADES = {"frontal": "haarcascade_frontalface_default.xml",
            "profile": "haarcascade_profileface.xml"}
# kind -> (sx, sy, dx, dy) of the module docstring, measured by benchmarks/haar_box_rule.py
# (OpenCV 4.14, 384 synthetic renders, 33 frontal and 38 profile pairs; benchmarks/RESULTS.md):
# the landmark box is the detector box shrunk (the cascades frame forehead and more) and moved
# down by a fifth of its height (the 68 landmarks start at the brows). Frontal dx (-0.03) is
# within the fit's noise. "profile_mirrored" is the profile cascade on the mirrored photo: the
# same rule with dx negated.
RULES = {"frontal": (0.81, 0.827, -0.027, 0.206), "profile": (0.661, 0.699, -0.018, 0.192)}
RULES["profile_mirrored"] = RULES["profile"][:2] + (-RULES["profile"][2], RULES["profile"][3])
NMS_IOU = 0.3
DETECT_MAX_SIDE = 1024  # px: larger photos are downscaled for the cascades (speed)


class BoxError(ValueError):
  """A box or landmark file, or one box, is unusable; one line naming the file / image."""


# ----------------------------------------------------------------------------------------------
# Files

def _number(s, where: str) -> float:
  try:
    v = float(s)
  except (TypeError, ValueError):
    raise BoxError(f"{where}: {s!r} is not a number") from None
  if not math.isfinite(v):
    raise BoxError(f"{where}: {s!r} is not finite")
  return v


def _box4(values, where: str) -> tuple[float, float, float, float]:
  if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) != 4:
    raise BoxError(f"{where}: expected [x0, y0, x1, y1], got {str(values)[:60]}")
  x0, y0, x1, y1 = (_number(v, where) for v in values)
  if not (x1 > x0 and y1 > y0):
    raise BoxError(f"{where}: box {[x0, y0, x1, y1]} needs x1 > x0 and y1 > y0")
  return x0, y0, x1, y1


def _load_json(path: str):
  try:
    with open(path, encoding="utf-8") as f:
      table = json.load(f)
  except OSError as e:
    raise BoxError(f"{path}: cannot read ({e.strerror or e})") from None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise BoxError(f"{path}: not valid JSON ({str(e).splitlines()[0]})") from None
  if not isinstance(table, dict):
    raise BoxError(f"{path}: expected a JSON object {{\"NAME.jpg\": [...]}}, got "
                   f"{type(table).__name__}")
  for name, faces in table.items():
    if not isinstance(faces, list):
      raise BoxError(f"{path}: key {name!r}: expected a list of faces, got "
                     f"{type(faces).__name__}")
  return table


def read_boxes(path) -> dict[str, list[tuple[float, float, float, float]]]:
  """{image name: [(x0, y0, x1, y1), ...] in file order} from a CSV or JSON file (module
  docstring). BoxError names the file and the row (CSV, 1-based line) or key (JSON)."""
  path = os.fspath(path)
  if path.lower().endswith(".json"):
    return {name: [_box4(b, f"{path}: key {name!r}, face {i}") for i, b in enumerate(faces)]
            for name, faces in _load_json(path).items()}
  try:
    with open(path, newline="", encoding="utf-8") as f:
      rows = list(csv.reader(f))
  except OSError as e:
    raise BoxError(f"{path}: cannot read ({e.strerror or e})") from None
  except UnicodeDecodeError:
    raise BoxError(f"{path}: not a text CSV file") from None
  if not rows or [c.strip() for c in rows[0]] != CSV_HEADER:
    raise BoxError(f"{path}: the first line must be exactly {','.join(CSV_HEADER)}")
  out = {}
  for line, row in enumerate(rows[1:], start=2):
    if not row or all(not c.strip() for c in row):
      continue
    where = f"{path}: row {line}"
    if len(row) != 5:
      raise BoxError(f"{where}: expected 5 columns image,x0,y0,x1,y1, got {len(row)}")
    name = row[0].strip()
    if not name:
      raise BoxError(f"{where}: empty image name")
    out.setdefault(name, []).append(_box4(row[1:], where))
  return out


def read_landmarks(path) -> dict[str, list[np.ndarray]]:
  """{image name: [(68, 2) float64 array, ...]} from a JSON file (module docstring); a wrong
  count, shape or non-finite value is a BoxError naming the file, image and face index."""
  path = os.fspath(path)
  out = {}
  for name, faces in _load_json(path).items():
    out[name] = []
    for i, pts in enumerate(faces):
      where = f"{path}: image {name!r}, face {i}"
      try:
        a = np.asarray(pts, np.float64)
      except (TypeError, ValueError):
        raise BoxError(f"{where}: landmarks must be 68 [x, y] number pairs") from None
      if a.shape != (68, 2):
        raise BoxError(f"{where}: landmarks have shape {a.shape}, expected 68 [x, y] pairs "
                       "(iBUG 68 order)")
      if not np.isfinite(a).all():
        raise BoxError(f"{where}: landmarks hold NaN or inf")
      out[name].append(a)
  return out


# ----------------------------------------------------------------------------------------------
# Boxes

def landmark_box(landmarks_68x2) -> np.ndarray:
  """[x0, y0, x1, y1]: the bounding box of the landmarks (68, 2)."""
  lm = np.asarray(landmarks_68x2, np.float64).reshape(-1, 2)
  return np.concatenate([lm.min(0), lm.max(0)])


def check_box(box, hw, name: str) -> None:
  """BoxError unless box [x0, y0, x1, y1] is finite, has x1 > x0, y1 > y0, sides of at least
  MIN_BOX_SIDE and overlaps the (H, W) image (partly outside is fine: crops are zero-padded)."""
  b = np.asarray(box, np.float64).reshape(-1)
  shown = np.round(b, 1).tolist()
  if b.shape != (4,) or not np.isfinite(b).all():
    raise BoxError(f"{name}: box {shown} must be 4 finite numbers x0, y0, x1, y1")
  x0, y0, x1, y1 = b
  if not (x1 > x0 and y1 > y0):
    raise BoxError(f"{name}: box {shown} needs x1 > x0 and y1 > y0 (x0, y0 is the top left)")
  if min(x1 - x0, y1 - y0) < MIN_BOX_SIDE:
    raise BoxError(f"{name}: box {shown} is smaller than {MIN_BOX_SIDE:g} px on a side; the "
                   "face is too small to fit")
  h, w = hw
  if x1 < 0 or y1 < 0 or x0 > w - 1 or y0 > h - 1:
    raise BoxError(f"{name}: box {shown} lies entirely outside the {w}x{h} image; check its "
                   "coordinates (pixels, x0, y0, x1, y1)")


def detector_to_landmark_box(box, kind: str) -> np.ndarray:
  """A cascade's box [x0, y0, x1, y1] -> the estimated 68-landmark box, by RULES[kind]:
  centre (cx + dx w, cy + dy h), size (sx w, sy h). kind: frontal, profile, profile_mirrored."""
  if kind not in RULES:
    raise ValueError(f"kind must be one of {sorted(RULES)}, got {kind!r}")
  sx, sy, dx, dy = RULES[kind]
  x0, y0, x1, y1 = np.asarray(box, np.float64).reshape(4)
  w, h = x1 - x0, y1 - y0
  cx, cy = (x0 + x1) / 2 + dx * w, (y0 + y1) / 2 + dy * h
  return np.array([cx - sx * w / 2, cy - sy * h / 2, cx + sx * w / 2, cy + sy * h / 2])


def iou(a, b) -> float:
  """Intersection over union of two boxes [x0, y0, x1, y1]."""
  iw = min(a[2], b[2]) - max(a[0], b[0])
  ih = min(a[3], b[3]) - max(a[1], b[1])
  if iw <= 0 or ih <= 0:
    return 0.0
  inter = iw * ih
  return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def nms(boxes_Nx4, scores_N, threshold: float = NMS_IOU) -> list[int]:
  """Indices kept by greedy non-maximum suppression, best score first."""
  keep = []
  for i in np.argsort(-np.asarray(scores_N, np.float64), kind="stable"):
    if all(iou(boxes_Nx4[i], boxes_Nx4[j]) <= threshold for j in keep):
      keep.append(int(i))
  return keep


# ----------------------------------------------------------------------------------------------
# Haar cascades

_CLASSIFIERS = {}


def haar_available() -> bool:
  """True if this OpenCV has CascadeClassifier and its cascade files (OpenCV 4.x wheels)."""
  try:
    _classifier("frontal")
    _classifier("profile")
  except BoxError:
    return False
  return True


def _classifier(kind: str):
  if kind not in _CLASSIFIERS:
    folder = getattr(getattr(cv2, "data", None), "haarcascades", "")
    path = os.path.join(folder, CASCADES[kind])
    if not hasattr(cv2, "CascadeClassifier") or not os.path.isfile(path):
      raise BoxError(f"OpenCV {cv2.__version__} has no Haar cascades (OpenCV 5 removed them); "
                     "give face boxes with --boxes or --landmarks, or install "
                     "'opencv-python-headless<5'")
    clf = cv2.CascadeClassifier(path)
    if clf.empty():
      raise BoxError(f"{path}: OpenCV cannot load this cascade; give face boxes with --boxes")
    _CLASSIFIERS[kind] = clf
  return _CLASSIFIERS[kind]


def raw_detections(gray_HxW, kind: str, min_side: int = 24):
  """[(box [x0, y0, x1, y1] in the given image, neighbour count)] of one cascade; kind
  profile_mirrored runs the profile cascade on the mirror image and maps boxes back."""
  img = gray_HxW[:, ::-1] if kind == "profile_mirrored" else gray_HxW
  clf = _classifier("frontal" if kind == "frontal" else "profile")
  rects, counts = clf.detectMultiScale2(np.ascontiguousarray(img), scaleFactor=1.1,
                                        minNeighbors=4, minSize=(min_side, min_side))
  w = gray_HxW.shape[1]
  out = []
  for (x, y, bw, bh), n in zip(np.asarray(rects).reshape(-1, 4), np.asarray(counts).reshape(-1)):
    x0 = w - (x + bw) if kind == "profile_mirrored" else x
    # Pixel-edge box [x, x + bw) -> pixel-centre coordinates of its first and last pixel.
    out.append((np.array([x0, y, x0 + bw - 1, y + bh - 1], np.float64), float(n)))
  return out


def detect_faces(rgb_HxWx3) -> list[np.ndarray]:
  """Faces found by the Haar cascades as 68-landmark boxes [x0, y0, x1, y1] (photo pixels),
  left to right. [] if none; BoxError if this OpenCV has no cascades (module docstring)."""
  rgb = np.asarray(rgb_HxWx3)
  h, w = rgb.shape[:2]
  k = min(1.0, DETECT_MAX_SIDE / max(h, w))
  gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
  if k < 1.0:
    gray = cv2.resize(gray, (int(round(w * k)), int(round(h * k))), interpolation=cv2.INTER_AREA)
  gray = cv2.equalizeHist(gray)
  boxes, scores = [], []
  for kind in ("frontal", "profile", "profile_mirrored"):
    for det, n in raw_detections(gray, kind):
      # Back to photo pixels (pixel centres: p_photo = (p_small + 0.5) / k - 0.5).
      det = (det + 0.5) / k - 0.5
      boxes.append(detector_to_landmark_box(det, kind))
      scores.append(n + (0.5 if kind == "frontal" else 0.0))  # ties: frontal boxes fit better
  keep = nms(boxes, scores)
  return sorted((boxes[i] for i in keep), key=lambda b: (b[0], b[1]))
