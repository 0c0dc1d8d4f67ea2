"""The real-photo check (issue 21): a trained pipeline on a folder of real photos, measured
where there is an annotation and checked for flip consistency everywhere.

    python -m cprfa_jax.studies.real_photos --config configs/quickstart.py \
        --workdir runs/quickstart --photos ../shared/photos --out runs/real_photos \
        [--landmarks FILE]

For every face it writes the overlay and the DAFI (NAME_overlay.png with the annotated points in
green where there are some, NAME_dafi.png), and into faces.csv: the NME against the annotation
(iBUG-68, normalised by sqrt(w·h) of the annotated 68-point box, as 3DDFA does) and the flip
consistency (fit the mirrored photo with the mirrored box, mirror that fit's landmarks back
through iBUG-68's left-right permutation, and take the NME between the two fits over the same
box): a model that has learned faces gives nearly the same points both ways. summary.md /
summary.json hold the table (per annotation source: a person's points and dlib's are reported
apart), contact_sheet.png every face's crop with its fitted and annotated points and its DAFI.

Faces: the annotated ones by their annotation's box (--landmarks, default PHOTOS/landmarks.json:
{"FILE": [{"landmarks_68": [[x, y] x 68], "box": [x0, y0, x1, y1], "annotation": "..."}]}), the
photos without annotation by the Haar fallback of `cprfa_jax.predict` (which misses profiles
and small faces). This is a development check, not a benchmark: never train or tune on the
photos it reads.
"""

from __future__ import annotations

import csv
import json
import os
import sys

import numpy as np
from absl import app, flags
from ml_collections import config_flags

from cprfa_jax import cli, metrics
from cprfa_jax.predict import boxes as boxes_lib
from cprfa_jax.predict import outputs, photos
from cprfa_jax.predict.predictor import Predictor
from cprfa_jax.report import draw, markdown

# iBUG-68's mirror image of each point (jaw, brows, nose, eyes, mouth outer / inner): point i of
# a mirrored face is point IBUG68_FLIP[i] of the face. An involution.
IBUG68_FLIP = np.array(
    list(range(16, -1, -1)) + list(range(26, 21, -1)) + list(range(21, 16, -1))
    + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48] + [59, 58, 57, 56, 55] + [64, 63, 62, 61, 60] + [67, 66, 65])

GT_RGB, FLIP_RGB = (40, 200, 60), (60, 140, 255)
TILE = 128


def flip_points(points_Kx2, width: int) -> np.ndarray:
  """Points of a photo -> the same points in the photo mirrored left-right (0-based pixel
  centres: x -> W - 1 - x)."""
  p = np.asarray(points_Kx2, np.float64).copy()
  p[..., 0] = width - 1 - p[..., 0]
  return p


def flip_landmarks(landmarks_68x2, width: int) -> np.ndarray:
  """68 landmarks of a face -> the 68 landmarks of its mirror image, in iBUG order."""
  return flip_points(landmarks_68x2, width)[..., IBUG68_FLIP, :]


def flip_box(box_4, width: int) -> np.ndarray:
  x0, y0, x1, y1 = np.asarray(box_4, np.float64)
  return np.array([width - 1 - x1, y0, width - 1 - x0, y1])


def read_annotations(path) -> dict[str, list[dict]]:
  """{file name: [{"landmarks_68": (68, 2), "box": (4,), "annotation": str}]} of an annotation
  file (module docstring); a one-line ValueError naming the file and the entry otherwise."""
  try:
    with open(path, encoding="utf-8") as f:
      raw = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"{path}: cannot read the annotation JSON ({e}); see "
                     "cprfa_jax/studies/real_photos.py for its format") from None
  if not isinstance(raw, dict):
    raise ValueError(f"{path}: expected {{\"FILE\": [faces]}}, got {type(raw).__name__}")
  out = {}
  for name, faces in raw.items():
    out[name] = []
    for i, face in enumerate(faces):
      lm = np.asarray(face.get("landmarks_68", []), np.float64)
      if lm.shape != (68, 2) or not np.isfinite(lm).all():
        raise ValueError(f"{path}: {name} face {i}: landmarks_68 must be 68 finite [x, y] pairs, "
                         f"got shape {lm.shape}")
      box = np.asarray(face.get("box", boxes_lib.landmark_box(lm)), np.float64)
      out[name].append({"landmarks_68": lm, "box": box,
                        "annotation": str(face.get("annotation", "unknown"))})
  return out


def source_of(annotation: str) -> str:
  """The annotation's kind for the summary: dlib's predictor or a person."""
  return "dlib" if "dlib" in annotation.lower() else "human"


def box_nme(pred_68x2, ref_68x2, box_4) -> float:
  """Mean point distance over sqrt(w·h) of `box_4` (3DDFA's normaliser)."""
  corners = np.asarray(box_4, np.float64).reshape(1, 2, 2)
  return float(metrics.nme(np.asarray(pred_68x2)[None], np.asarray(ref_68x2)[None], None,
                           corners)[0])


def check_photo(pred: Predictor, photo_HxWx3, annotated: list[dict] | None):
  """(faces, rows) of one photo: the predictor's face dicts, and one row per face: box source,
  NME against the annotation (None without one), flip NME, confidence, failure flag, and the
  mirrored fit's landmarks mapped back (for pictures)."""
  h, w = photo_HxWx3.shape[:2]
  if annotated:
    box_list = [a["box"] for a in annotated]
    source = "annotation"
  else:
    box_list = boxes_lib.detect_faces(photo_HxWx3)
    source = "haar"
  if not box_list:
    return [], []
  box_arr = np.stack(box_list)
  faces = pred.faces(photo_HxWx3, box_arr)
  mirrored = pred.faces(np.ascontiguousarray(photo_HxWx3[:, ::-1]),
                        np.stack([flip_box(b, w) for b in box_arr]))
  rows = []
  for i, (face, mface) in enumerate(zip(faces, mirrored)):
    back = flip_landmarks(mface["landmarks_68"], w)
    ann = annotated[i] if annotated else None
    rows.append({"face": i, "box_source": source,
                 "annotation": ann["annotation"] if ann else "",
                 "source": source_of(ann["annotation"]) if ann else "none",
                 "nme": box_nme(face["landmarks_68"], ann["landmarks_68"], ann["box"]) if ann else None,
                 "flip_nme": box_nme(back, face["landmarks_68"], box_arr[i]),
                 "confidence": face["confidence"], "failure": face["failure"],
                 "yaw_deg": float(face["pitch_yaw_roll_deg"][1]),
                 "flip_back": back, "gt": ann["landmarks_68"] if ann else None})
  return faces, rows


def face_tile(pred: Predictor, photo, face, row) -> np.ndarray:
  """One face for the contact sheet: its crop with the fitted (red), mirrored-fit (blue) and
  annotated (green) points, its DAFI, and a label."""
  crop, k, b = pred.crop(photo, face["box"][None])
  scale = max(1, TILE // crop.shape[1])
  img = draw.upscale(crop[0], scale)
  to_tile = lambda p: (np.asarray(p) * k[0] + b[0] + 0.5) * scale - 0.5
  radius = max(1.0, scale / 2)
  if row["gt"] is not None:
    draw.draw_dots(img, to_tile(row["gt"]), radius, GT_RGB)
  draw.draw_dots(img, to_tile(row["flip_back"]), radius, FLIP_RGB)
  draw.draw_dots(img, to_tile(face["landmarks_68"]), radius, (230, 40, 40))
  dafi = draw.upscale(draw.to_uint8_rgb(face["dafi"] * face["mask"][..., None]), scale)
  label = (f"NME {100 * row['nme']:.1f}" if row["nme"] is not None else "no annotation") + \
      f", flip {100 * row['flip_nme']:.1f}" + (" FAIL?" if row["failure"] else "")
  pair = draw.tile_columns([img, dafi])
  return draw.tile_rows([pair, draw.text_block(label, pair.shape[1], 0.4)])


def _mean(values):
  v = [x for x in values if x is not None and np.isfinite(x)]
  return (float(np.mean(v)) if v else None), (float(np.median(v)) if v else None), len(v)


def summarise(rows) -> dict:
  """Per annotation source (human, dlib, all annotated) the NME's mean and median (%) and the
  face count; the flip NME over every face."""
  out = {}
  for name, keep in (("human", lambda r: r["source"] == "human"),
                     ("dlib", lambda r: r["source"] == "dlib"),
                     ("annotated", lambda r: r["nme"] is not None)):
    mean, median, n = _mean([r["nme"] for r in rows if keep(r)])
    out[name] = {"faces": n, "nme_mean": mean and 100 * mean, "nme_median": median and 100 * median}
  mean, median, n = _mean([r["flip_nme"] for r in rows])
  out["flip"] = {"faces": n, "flip_nme_mean": mean and 100 * mean,
                 "flip_nme_median": median and 100 * median,
                 "flagged": int(sum(r["failure"] for r in rows))}
  return out


def summary_md(summary: dict, header: str) -> str:
  fmt = lambda x: "–" if x is None else f"{x:.2f}"
  rows = [(k, summary[k]["faces"], fmt(summary[k]["nme_mean"]), fmt(summary[k]["nme_median"]))
          for k in ("human", "dlib", "annotated")]
  f = summary["flip"]
  return "\n".join([
      header, "",
      markdown.table(("faces annotated by", "faces", "NME % mean", "NME % median"), rows), "",
      markdown.table(("flip consistency", "faces", "flip NME % mean", "median", "flagged failure"),
                     [("every face", f["faces"], fmt(f["flip_nme_mean"]),
                       fmt(f["flip_nme_median"]), f["flagged"])]), ""])


def run(pred: Predictor, photo_dir: str, annotations: dict, out_dir: str, log=print) -> dict:
  """The check over every photo of `photo_dir`; writes the module docstring's files; returns
  the summary."""
  os.makedirs(out_dir, exist_ok=True)
  rows, tiles = [], []
  tri = np.asarray(pred.model3d.triangles_Tx3)
  for path in photos.list_images([photo_dir]):
    name = os.path.basename(path)
    try:
      photo, _ = photos.load_photo(path)
      faces, prow = check_photo(pred, photo, annotations.get(name))
    except (photos.PhotoError, boxes_lib.BoxError) as e:
      log(str(e))
      continue
    if not faces:
      log(f"{name}: no face found (Haar); skipped")
      continue
    over = outputs.overlay(photo, faces, tri)
    for r in prow:
      if r["gt"] is not None:
        draw.draw_dots(over, r["gt"], max(1.5, photo.shape[1] / 400), GT_RGB)
    stem = os.path.splitext(name)[0]
    draw.save_png(os.path.join(out_dir, f"{stem}_overlay.png"), over)
    draw.save_png(os.path.join(out_dir, f"{stem}_dafi.png"), outputs.dafi_picture(faces))
    for face, r in zip(faces, prow):
      tiles.append(face_tile(pred, photo, face, r))
      rows.append({"image": name, **r})
    log(f"{name}: {len(faces)} face(s)" + "".join(
        f"; NME {100 * r['nme']:.2f}" if r["nme"] is not None else "" for r in prow))
  keys = ("image", "face", "box_source", "source", "annotation", "nme", "flip_nme",
          "confidence", "failure", "yaw_deg")
  with open(os.path.join(out_dir, "faces.csv"), "w", newline="", encoding="utf-8") as f:
    wr = csv.writer(f)
    wr.writerow(keys)
    for r in rows:
      wr.writerow(["" if r[k] is None else r[k] for k in keys])
  summary = summarise(rows)
  with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as f:
    json.dump({"summary": summary, "faces": [{k: r[k] for k in keys} for r in rows]}, f, indent=1)
  with open(os.path.join(out_dir, "summary.md"), "w", encoding="utf-8") as f:
    f.write(summary_md(summary, f"# Real-photo check: {photo_dir} ({len(rows)} faces)"))
  if tiles:
    per_row = 8
    grid = [draw.tile_columns(tiles[i:i + per_row]) for i in range(0, len(tiles), per_row)]
    draw.save_png(os.path.join(out_dir, "contact_sheet.png"), draw.tile_rows(grid))
  return summary


FLAGS = flags.FLAGS


def define_flags():
  # Claimed only when run as a script: importing the module (tests, notebooks, other
  # scripts) must not claim --config, which several scripts define.
  config_flags.DEFINE_config_file("config", None, "The config the pipeline was trained "
                                  "with.", lock_config=True)
  flags.DEFINE_string("workdir", None, "The trained pipeline (train.py's --workdir).")
  flags.DEFINE_string("photos", None, "A folder of photos.")
  flags.DEFINE_string("landmarks", None, "Annotation JSON (default: PHOTOS/landmarks.json if any).")
  flags.DEFINE_string("out", "runs/real_photos", "Where the pictures and tables go.")


def main(argv):
  del argv
  for name in ("config", "workdir", "photos"):
    if FLAGS[name].value is None:
      sys.exit(f"--{name} is required (python -m cprfa_jax.studies.real_photos --help)")
  if not os.path.isdir(FLAGS.photos):
    sys.exit(f"--photos {FLAGS.photos}: not a folder")
  ann_path = FLAGS.landmarks or os.path.join(FLAGS.photos, "landmarks.json")
  try:
    annotations = (read_annotations(ann_path)
                   if FLAGS.landmarks or os.path.exists(ann_path) else {})
  except ValueError as e:
    sys.exit(str(e))
  config = FLAGS.config
  pred = Predictor.from_workdir(config, FLAGS.workdir, cli.load_model(config))
  summary = run(pred, FLAGS.photos, annotations, FLAGS.out)
  print(summary_md(summary, f"# Real-photo check: {FLAGS.photos}"))


if __name__ == "__main__":
  define_flags()
  app.run(main)
