"""Fits the 3D face model to the faces in photos with a pipeline train.py trained.

  python -m cprfa_jax.predict --config configs/quickstart.py --workdir runs/quickstart \
      --out runs/predicted photo.jpg folder/ [--boxes boxes.csv] [--landmarks lm.json]
  python -m cprfa_jax.predict export --config configs/quickstart.py --workdir runs/quickstart \
      --out model.jaxexport [--batch N] [--platforms cpu,cuda,tpu]

Per image NAME it writes to --out: NAME.json (per face, in box order: box, landmarks_68 in
photo pixels, pitch_yaw_roll_deg, pose, pose_para, alpha, confidence, failure), NAME.obj (the
fitted meshes, coloured from the photo), NAME_overlay.png (landmarks, mesh wireframe, pose
axes) and NAME_dafi.png (each face's crop and its DAFI).

Face boxes are the faces' 68-landmark bounding boxes [x0, y0, x1, y1] in photo pixels, from
--boxes (CSV with the header image,x0,y0,x1,y1, or JSON {"NAME.jpg": [[x0, y0, x1, y1], ...]}),
else from --landmarks (the landmarks' box), else from OpenCV's Haar cascades (a fallback: they
miss profiles and small faces). --landmarks (JSON {"NAME.jpg": [[[x, y] * 68], ...]}, iBUG
order, photo pixels, faces in box order) feeds those points to the fusion branch (Eq. 8)
instead of the landmark network's. A bad image or box is one line on stderr and the others
are still processed; the exit status is 1 if any image failed.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
from absl import flags, logging
from ml_collections import config_flags

from cprfa_jax import cli
from cprfa_jax.predict import boxes as boxes_lib
from cprfa_jax.predict import export as export_lib
from cprfa_jax.predict import outputs, photos
from cprfa_jax.predict.predictor import Predictor
from cprfa_jax.report import draw

SCRIPT = "python -m cprfa_jax.predict"
FLAGS = flags.FLAGS


def define_flags():
  # Claimed only when run as a script: importing the module (tests, notebooks, other
  # scripts) must not claim --config, which several scripts define.
  config_flags.DEFINE_config_file("config", None, "The config the pipeline was trained "
                                  "with (configs/quickstart.py, ...).")
  flags.DEFINE_string("workdir", None, "The trained pipeline (train.py --workdir).")
  flags.DEFINE_string("out", None, "Output folder (export: the artifact's file).")
  flags.DEFINE_string("boxes", None, "Face boxes: CSV (image,x0,y0,x1,y1) or JSON.")
  flags.DEFINE_string("landmarks", None, "68 landmarks per face (JSON), photo px.")
  flags.DEFINE_string("stage", None, "Regressor stage (capu, cpr_h, cpr); default: the "
                      "most complete trained one.")
  flags.DEFINE_list("platforms", None, "export: the platforms the artifact runs on, "
                    "e.g. cpu,cuda,tpu (lowered here, no GPU needed); default: this "
                    "machine's.")
  flags.DEFINE_integer("batch", 32, "Faces per compiled call (export: 0 = any batch, "
                       "a symbolic batch dimension).")


def _need(name):
  if not FLAGS[name].value:
    cli.fail(SCRIPT, f"--{name} is required (see {SCRIPT} --help)")


def _progress(i, n, name):
  width = 24
  done = width * i // max(n, 1)
  sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {i}/{n} {name[:40]:<40}")
  sys.stderr.flush()


class _Job:
  """One photo's faces on their way through the predictor."""

  def __init__(self, path, photo, boxes, landmarks, predictor):
    self.path, self.photo, self.boxes, self.landmarks = path, photo, boxes, landmarks
    self.crops, self.k, self.b = predictor.crop(photo, boxes)


def _boxes_for(name, photo, box_table, lm_table, warn):
  """(boxes (F, 4), landmarks (F, 68, 2) or None) of one photo; BoxError names the problem."""
  lms = lm_table.get(name) if lm_table is not None else None
  if box_table is not None:
    if name not in box_table:
      raise boxes_lib.BoxError(f"{name}: no box in {FLAGS.boxes}; add a row for it")
    bx = np.asarray(box_table[name], np.float64).reshape(-1, 4)
  elif lms is not None:
    bx = np.stack([boxes_lib.landmark_box(l) for l in lms])
  else:
    warn()
    try:
      bx = np.asarray(boxes_lib.detect_faces(photo), np.float64).reshape(-1, 4)
    except boxes_lib.BoxError as e:
      raise boxes_lib.BoxError(f"{name}: {e}") from e
    if not len(bx):
      raise boxes_lib.BoxError(f"{name}: no face found by the Haar cascades; give its box with "
                               "--boxes")
  for box in bx:
    boxes_lib.check_box(box, photo.shape[:2], name)
  if lms is not None:
    lms = np.asarray(lms, np.float64).reshape(-1, 68, 2)
    if len(lms) != len(bx):
      raise boxes_lib.BoxError(f"{name}: {len(lms)} landmark sets in {FLAGS.landmarks} but "
                               f"{len(bx)} boxes; give one per face, in box order")
  return bx, lms


def _write(job, faces, out_dir, triangles):
  stem = os.path.splitext(os.path.basename(job.path))[0]
  base = os.path.join(out_dir, stem)
  outputs.write_json(base + ".json", os.path.basename(job.path), faces)
  outputs.write_faces_obj(base + ".obj", job.photo, faces, triangles)
  draw.save_png(base + "_overlay.png", outputs.overlay(job.photo, faces, triangles))
  draw.save_png(base + "_dafi.png", outputs.dafi_picture(faces))


def _flush(jobs, predictor, out_dir, triangles) -> int:
  """Fits every queued face in one call per batch, writes each photo's outputs; the number of
  likely failures."""
  if not jobs:
    return 0
  crops = np.concatenate([j.crops for j in jobs])
  k, b = np.concatenate([j.k for j in jobs]), np.concatenate([j.b for j in jobs])
  lm = np.concatenate([np.full((len(j.boxes), 68, 2), np.nan) if j.landmarks is None
                       else j.landmarks for j in jobs])
  out = predictor.fit_crops(crops, k, b, lm)
  at, failures = 0, 0
  for j in jobs:
    n = len(j.boxes)
    faces = [predictor.face(j.photo.shape[:2], j.boxes[i], j.crops[i], j.k[i], j.b[i],
                            {key: v[at + i] for key, v in out.items()}) for i in range(n)]
    at += n
    failures += sum(f["failure"] for f in faces)
    _write(j, faces, out_dir, triangles)
  jobs.clear()
  return failures


def predict(argv) -> int:
  for name in ("workdir", "out"):
    _need(name)
  if FLAGS.config is None:
    cli.fail(SCRIPT, f"--config is required (see {SCRIPT} --help)")
  if not argv:
    cli.fail(SCRIPT, "give one or more images or folders after the flags")
  try:
    paths = photos.list_images(argv)
    box_table = boxes_lib.read_boxes(FLAGS.boxes) if FLAGS.boxes else None
    lm_table = boxes_lib.read_landmarks(FLAGS.landmarks) if FLAGS.landmarks else None
  except (photos.PhotoError, boxes_lib.BoxError) as e:
    cli.fail(SCRIPT, str(e))
  if not paths:
    cli.fail(SCRIPT, f"no images in {' '.join(argv)} (jpg, png, bmp, tif, webp)")
  t0 = time.time()
  try:
    predictor = Predictor.from_workdir(FLAGS.config, FLAGS.workdir, stage=FLAGS.stage,
                                       max_batch=max(1, FLAGS.batch))
  except (FileNotFoundError, ValueError) as e:
    cli.fail(SCRIPT, cli.one_line(str(e)))
  os.makedirs(FLAGS.out, exist_ok=True)
  triangles = np.asarray(predictor.model3d.triangles_Tx3)
  warned = []

  def warn():
    if not warned:
      warned.append(True)
      sys.stderr.write(f"\r{SCRIPT}: no --boxes or --landmarks: finding faces with OpenCV's Haar "
                       "cascades, a fallback that misses profiles and small faces\n")

  jobs, errors, num_faces, failures = [], [], 0, 0
  for i, path in enumerate(paths):
    name = os.path.basename(path)
    _progress(i, len(paths), name)
    try:
      photo, notes = photos.load_photo(path)
      for note in notes:
        sys.stderr.write(f"\r{note}\n")
      bx, lms = _boxes_for(name, photo, box_table, lm_table, warn)
      jobs.append(_Job(path, photo, bx, lms, predictor))
      num_faces += len(bx)
    except (photos.PhotoError, boxes_lib.BoxError) as e:
      errors.append(name)
      sys.stderr.write(f"\r{SCRIPT}: {cli.one_line(str(e))}\n")
    if sum(len(j.boxes) for j in jobs) >= predictor.max_batch:
      failures += _flush(jobs, predictor, FLAGS.out, triangles)
  failures += _flush(jobs, predictor, FLAGS.out, triangles)
  _progress(len(paths), len(paths), "")
  sys.stderr.write("\n")
  print(f"{len(paths) - len(errors)} of {len(paths)} images, {num_faces} faces "
        f"({failures} flagged as likely failures) in {time.time() - t0:.1f} s -> {FLAGS.out}"
        + (f"; {len(errors)} failed: {', '.join(errors)}" if errors else ""))
  return 1 if errors else 0


def export(argv) -> int:
  del argv
  for name in ("workdir", "out"):
    _need(name)
  unknown = sorted(set(FLAGS.platforms or ()) - set(export_lib.PLATFORMS))
  if unknown:   # jax.export lowers for any name and the artifact would fail only where it runs
    cli.fail(SCRIPT, f"--platforms: unknown {', '.join(unknown)}; use any of "
             f"{', '.join(export_lib.PLATFORMS)}")
  try:
    predictor = Predictor.from_workdir(FLAGS.config, FLAGS.workdir, stage=FLAGS.stage)
  except (FileNotFoundError, ValueError) as e:
    cli.fail(SCRIPT, cli.one_line(str(e)))
  batch = FLAGS.batch if FLAGS["batch"].present and FLAGS.batch > 0 else None
  t0 = time.time()
  head = export_lib.write(predictor, FLAGS.out, batch=batch, platforms=FLAGS.platforms)
  size = os.path.getsize(FLAGS.out) / 2**20
  print(f"exported {predictor.stage} ({head['image_size']} px crops, batch "
        f"{head['batch'] or 'any'}, {', '.join(head['platforms'])}) to {FLAGS.out}: {size:.1f} MiB "
        f"in {time.time() - t0:.1f} s; run it with cprfa_jax/predict/standalone.py (jax + numpy)")
  return 0


def main(argv):
  logging.set_verbosity(logging.ERROR)   # orbax's INFO lines would bury the progress bar
  args = argv[1:]
  if args and args[0] == "export":
    sys.exit(export(args[1:]))
  sys.exit(predict(args))
