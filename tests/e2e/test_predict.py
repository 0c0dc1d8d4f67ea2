"""cprfa_jax.predict on photos, with the smoke pipeline (conftest's `smoke_workdir`): synthetic
faces pasted into larger canvases at known offsets and integer scales (nearest-neighbour
upsampled, so the predictor's area-resized crop is exactly the rendered image), several per
photo. The predictor's landmarks in photo pixels must equal the host reference path's (the
jitted networks, host decoding by `observe.host_observations`, `methods.run_regressor`) mapped
to the photo; the exported artifact must equal the
jitted function when run with jax and numpy alone; the CLI writes every output and reports
each bad input in one line."""

import json
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest

from cprfa_jax import cli, observe, workdirs
from cprfa_jax.data import sampler
from cprfa_jax.data.datasets import set_config
from cprfa_jax.decode import pixel
from cprfa_jax.evaluate import methods
from cprfa_jax.geometry import projection
from cprfa_jax.mm.model import vertices
from cprfa_jax.nets import build
from cprfa_jax.predict import outputs
from cprfa_jax.predict.predictor import BOX_SCALE, Predictor

pytestmark = pytest.mark.slow     # the smoke pipeline is trained first (shared with test_pipeline)

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "smoke.py"
NUM = 6
# float32 landmark pixels of a few hundred: ~1e-4 px of rounding through different batch shapes.
PX_TOL = 1e-3


def _paste(images, layout, hw):
  """A grey canvas with images[i] upsampled by layout[i] = (x, y, scale) at (x, y); the boxes
  (the 68-landmark-box convention) whose crops are exactly those squares."""
  canvas = np.full((*hw, 3), 96, np.uint8)
  boxes = []
  for img, (x, y, f) in zip(images, layout):
    side = img.shape[0] * f
    canvas[y:y + side, x:x + side] = np.repeat(np.repeat(img, f, 0), f, 1)
    c, half = np.array([x + side / 2, y + side / 2]), side / BOX_SCALE / 2
    boxes.append([c[0] - half, c[1] - half, c[0] + half, c[1] + half])
  return canvas, np.array(boxes)


def _host_observations(config, workdir, model3d, exs):
  """The observation step's host reference: the jitted networks, then the KD-tree (or NumPy
  sub-pixel) decoding of `observe.host_observations`."""
  images = np.stack([e["image"] for e in exs])
  d, prob = build.unet(config)(workdirs.params_of(config, workdir, "dafi"), images)
  lm = build.landmarks(config)(workdirs.params_of(config, workdir, "landmarks"), images)[0]
  return observe.host_observations(np.asarray(d), np.asarray(prob) > 0.5, np.asarray(lm),
                                   pixel.build_pncc_tree(model3d.pncc_Vx3),
                                   config.cpr.match_dist, images.shape[1:3],
                                   decode=config.cpr.decode)


def _to_photo(points_px, size, x, y, f):
  """Crop pixels -> photo pixels of a square of side size * f at (x, y) (`data.real.crop_affine`)."""
  k = 1.0 / f
  return (points_px + 0.5) / k - 0.5 + np.array([x, y])


LAYOUTS = [[(3, 5, 1), (45, 2, 2), (118, 20, 3)], [(10, 120, 2), (80, 130, 1), (150, 140, 1)]]


@pytest.fixture(scope="module")
def setup(smoke_workdir):
  config = cli.load_config(str(CONFIG))
  model3d = cli.load_model(config)
  pred = Predictor.from_workdir(config, str(smoke_workdir), model3d)
  s = config.data.image_size
  exs = sampler.generate(model3d, range(NUM), set_config("synth-aflw", s), 4242)
  images = np.stack([e["image"] for e in exs])
  # The host reference path: host KD-tree decoding, run_regressor, landmarks_px.
  obs = _host_observations(config, str(smoke_workdir), model3d, exs)
  with np.load(workdirs.selection_file(str(smoke_workdir))) as f:
    sel, layout = f["selected"], f["layout"]
  return dict(config=config, model3d=model3d, pred=pred, s=s, exs=exs, images=images, obs=obs,
              sel=sel, layout=layout, workdir=smoke_workdir)


def _eval_path(st, obs):
  alpha, pose, _ = methods.run_regressor(st["config"], st["model3d"], st["pred"].stage,
                                          st["pred"].weights.regressor, obs, st["sel"],
                                          st["layout"], batch_size=4)
  return alpha, methods.landmarks_px(st["model3d"], alpha, pose, (st["s"],) * 2)


def test_landmarks_in_photo_pixels_equal_the_evaluation_path(setup):
  st = setup
  assert st["pred"].stage == "capu"
  alpha_eval, lm_eval = _eval_path(st, st["obs"])
  for n, layout in enumerate(LAYOUTS):
    idx = range(3 * n, 3 * n + 3)
    canvas, boxes = _paste(st["images"][list(idx)], layout, (300, 330))
    crops = st["pred"].crop(canvas, boxes)[0]
    np.testing.assert_array_equal(crops, st["images"][list(idx)])   # the construction holds
    faces = st["pred"].faces(canvas, boxes)
    for face, i, (x, y, f) in zip(faces, idx, layout):
      want = _to_photo(lm_eval[i], st["s"], x, y, f)
      np.testing.assert_allclose(face["landmarks_68"], want, atol=PX_TOL * f, rtol=0)
      np.testing.assert_allclose(face["alpha"], alpha_eval[i], atol=1e-4, rtol=0)
      np.testing.assert_array_equal(face["box"], boxes[idx.index(i)])


# The tests below fit 4 crops or 1 (or 3, padded to 4) where they can: the predictor compiles
# once per padded batch size, ~10 s each on 2 CPU cores (issue 23).
def test_a_fit_does_not_depend_on_its_batch(setup):
  pred, imgs = setup["pred"], setup["images"][:4]
  k, b = np.ones(4, np.float32), np.zeros((4, 2), np.float32)
  together = pred.fit_crops(imgs, k, b)
  for i in (0, 3):
    alone = pred.fit_crops(imgs[i:i + 1], k[:1], b[:1])
    np.testing.assert_allclose(alone["landmarks_px"][0], together["landmarks_px"][i],
                               atol=PX_TOL, rtol=0)
    assert alone["failure"][0] == together["failure"][i]


def test_the_pose_projects_the_fitted_model_onto_the_photo(setup):
  st = setup
  canvas, boxes = _paste(st["images"][:3], LAYOUTS[0], (300, 330))
  m = st["model3d"]
  for face in st["pred"].faces(canvas, boxes):
    px = projection.to_pixels(projection.project(vertices(m, face["alpha"]), face["pose"]),
                              canvas.shape[:2])
    np.testing.assert_allclose(px, face["vertices_px"][:, :2], atol=PX_TOL * 3, rtol=0)
    np.testing.assert_allclose(face["pitch_yaw_roll_deg"], np.degrees(face["pose"][:3]),
                               rtol=1e-6)
    back = projection.pose_from_pose_para(face["pose_para"], m.offset_3, m.unit_scale,
                                          canvas.shape[:2])
    np.testing.assert_allclose(np.asarray(back), face["pose"], atol=2e-4, rtol=1e-4)


def test_plug_in_landmarks_replace_the_landmark_network(setup):
  st = setup
  layout = LAYOUTS[0]
  canvas, boxes = _paste(st["images"][:3], layout, (300, 330))
  truth_crop = np.stack([e["landmarks"] for e in st["exs"][:3]])
  truth_photo = np.stack([_to_photo(t, st["s"], x, y, f) for t, (x, y, f) in zip(truth_crop, layout)])
  faces = st["pred"].faces(canvas, boxes, landmarks=truth_photo)
  obs = {key: v[:3] for key, v in st["obs"].items() if key in ("y_all", "det_all", "y_lm")}
  obs["y_lm"] = np.asarray(projection.from_pixels(truth_crop, (st["s"],) * 2), np.float32)
  _, lm_given = _eval_path(st, obs)
  _, lm_net = _eval_path(st, {key: v[:3] for key, v in st["obs"].items()})
  for face, want, other, (x, y, f) in zip(faces, lm_given, lm_net, layout):
    np.testing.assert_allclose(face["landmarks_68"], _to_photo(want, st["s"], x, y, f),
                               atol=PX_TOL * f, rtol=0)
  assert np.abs(lm_given - lm_net).max() > 10 * PX_TOL     # the given points were used


def test_a_landmark_detector_given_to_the_predictor_is_called_per_photo(setup):
  st = setup
  layout = LAYOUTS[1]
  canvas, boxes = _paste(st["images"][3:6], layout, (300, 330))
  truth = np.stack([_to_photo(e["landmarks"], st["s"], x, y, f)
                    for e, (x, y, f) in zip(st["exs"][3:6], layout)])
  calls = []

  def detector(photo, boxes_Fx4):
    calls.append((photo.shape, np.asarray(boxes_Fx4).shape))
    return truth

  pred = Predictor.from_workdir(st["config"], str(st["workdir"]), st["model3d"], landmarks=detector)
  got = pred.faces(canvas, boxes)
  want = st["pred"].faces(canvas, boxes, landmarks=truth)
  assert calls == [(canvas.shape, (3, 4))]
  for g, w in zip(got, want):
    np.testing.assert_allclose(g["landmarks_68"], w["landmarks_68"], atol=PX_TOL, rtol=0)


def _cli(*args, cwd=ROOT):
  return subprocess.run([sys.executable, "-m", "cprfa_jax.predict", *map(str, args)],
                        capture_output=True, text=True, timeout=900, cwd=cwd)


def test_exported_artifact_runs_with_jax_and_numpy_only(setup, tmp_path):
  st = setup
  art = tmp_path / "model.jaxexport"
  # Lowered for GPUs and TPUs too (no such device here); run on the CPU below.
  run = _cli("export", "--config", CONFIG, "--workdir", st["workdir"], "--out", art,
             "--platforms", "cpu,cuda,tpu")
  assert run.returncode == 0, run.stderr[-2000:]
  assert "batch any, cpu, cuda, tpu" in run.stdout
  crops, k, b = st["images"][:4], np.full(4, 0.5, np.float32), np.ones((4, 2), np.float32)
  for name, a in (("crops", crops), ("k", k), ("b", b)):
    np.save(tmp_path / f"{name}.npy", a)
  # flax and cprfa_jax blocked: the loader may import only jax and numpy.
  code = ("import sys, runpy; sys.modules['flax'] = None; sys.modules['cprfa_jax'] = None; "
          f"sys.argv = ['standalone', {str(art)!r}, {str(tmp_path / 'crops.npy')!r}, "
          f"{str(tmp_path / 'k.npy')!r}, {str(tmp_path / 'b.npy')!r}, {str(tmp_path / 'out.npz')!r}]; "
          f"runpy.run_path({str(ROOT / 'cprfa_jax/predict/standalone.py')!r}, run_name='__main__')")
  run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                       cwd=tmp_path)
  assert run.returncode == 0, run.stderr[-2000:]
  want = st["pred"].fit_crops(crops, k, b)
  with np.load(tmp_path / "out.npz") as got:
    assert set(got.files) == set(want)
    for key in want:
      if want[key].dtype == bool:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
      else:
        scale = max(1.0, float(np.nanmax(np.abs(want[key]))))
        np.testing.assert_allclose(got[key], want[key], atol=1e-5 * scale, rtol=0, err_msg=key)


def _write_cases(st, folder):
  """Good photos (two canvases, one in grayscale) and bad ones; a boxes CSV for all."""
  folder.mkdir()
  rows = ["image,x0,y0,x1,y1"]
  for n, layout in enumerate(LAYOUTS):
    canvas, boxes = _paste(st["images"][3 * n:3 * n + 3], layout, (300, 330))
    name = f"canvas{n}.png"
    img = cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)
    if n == 1:
      img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(folder / name), img)
    rows += [f"{name},{','.join(f'{v:.3f}' for v in box)}" for box in boxes]
  ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
  (folder / "truncated.jpg").write_bytes(jpg.tobytes()[:len(jpg) // 2])
  rows.append("truncated.jpg,10,10,60,60")
  cv2.imwrite(str(folder / "tiny.png"), np.zeros((12, 12, 3), np.uint8))
  rows.append("tiny.png,1,1,5,5")
  cv2.imwrite(str(folder / "outside.png"), canvas)
  rows.append("outside.png,900,900,990,990")
  csv = folder.parent / "boxes.csv"
  csv.write_text("\n".join(rows) + "\n")
  return csv


def test_cli_writes_every_output_and_names_each_bad_input(setup, tmp_path):
  st = setup
  csv = _write_cases(st, tmp_path / "photos")
  out = tmp_path / "out"
  run = _cli("--config", CONFIG, "--workdir", st["workdir"], "--out", out, "--boxes", csv,
             tmp_path / "photos")
  assert run.returncode == 1, run.stderr[-3000:]          # some images failed
  errors = [l for l in run.stderr.replace("\r", "\n").splitlines() if "cprfa_jax.predict:" in l]
  for bad in ("truncated.jpg", "tiny.png", "outside.png"):
    assert sum(bad in l for l in errors) == 1, (bad, errors)
    assert not (out / (bad.rsplit(".", 1)[0] + ".json")).exists()
  assert "2 of 5 images, 6 faces" in run.stdout, run.stdout
  m = st["model3d"]
  for n, layout in enumerate(LAYOUTS):
    doc = json.loads((out / f"canvas{n}.json").read_text())
    assert doc["image"] == f"canvas{n}.png" and len(doc["faces"]) == 3
    assert set(doc["faces"][0]) == {"box", "landmarks_68", "pitch_yaw_roll_deg", "pose",
                                    "pose_para", "alpha", "confidence", "failure"}
    verts, _, tris = outputs.read_obj(out / f"canvas{n}.obj")
    assert verts.shape == (3 * m.num_vertices, 3) and tris.shape == (3 * m.triangles_Tx3.shape[0], 3)
    np.testing.assert_array_equal(tris[:m.triangles_Tx3.shape[0]], np.asarray(m.triangles_Tx3))
    overlay = cv2.imread(str(out / f"canvas{n}_overlay.png"))
    assert overlay.shape == (300, 330, 3)
    assert cv2.imread(str(out / f"canvas{n}_dafi.png")) is not None
    if n == 0:   # a colour PNG is read losslessly: the CLI's landmarks are the predictor's
      canvas, boxes = _paste(st["images"][:3], layout, (300, 330))
      for face, want in zip(doc["faces"], st["pred"].faces(canvas, boxes)):
        np.testing.assert_allclose(face["landmarks_68"], want["landmarks_68"], atol=0.01)
  assert any("canvas1.png" in l and "gray" in l.lower() for l in run.stderr.splitlines())


def test_cli_without_boxes_says_no_face_was_found(setup, tmp_path):
  (tmp_path / "p").mkdir()
  cv2.imwrite(str(tmp_path / "p" / "blank.png"), np.full((120, 160, 3), 200, np.uint8))
  run = _cli("--config", CONFIG, "--workdir", setup["workdir"], "--out", tmp_path / "o",
             tmp_path / "p")
  assert run.returncode == 1
  assert "Haar" in run.stderr and "blank.png: no face found" in run.stderr


def test_cli_usage_errors_are_one_line(tmp_path):
  run = _cli("--config", CONFIG, "--out", tmp_path, "x.png")
  assert run.returncode == 2 and run.stderr.strip().count("\n") == 0
  assert "--workdir" in run.stderr
  run = _cli("--config", CONFIG, "--workdir", tmp_path / "nothing", "--out", tmp_path / "o",
             tmp_path / "missing.png")
  assert run.returncode == 2 and "missing.png" in run.stderr
  run = _cli("export", "--config", CONFIG, "--workdir", tmp_path, "--out", tmp_path / "m",
             "--platforms", "cpu,gpux")
  assert run.returncode == 2 and run.stderr.strip().count("\n") == 0
  assert "gpux" in run.stderr and "cuda" in run.stderr


def test_subpixel_decoding_on_the_device_matches_the_evaluation_path(setup):
  # A pipeline trained with cpr.decode=subpixel decodes in the predictor (decode.subpixel_device)
  # as its host reference does (decode.subpixel); the smoke weights serve, the decoder changes
  # no shape. float32 vs float64 decoding: ~1e-5 px apart (measured ~2e-6 px on the landmarks).
  st = setup
  config = cli.load_config(str(CONFIG))
  config.cpr.decode = "subpixel"
  pred = Predictor.from_workdir(config, str(st["workdir"]), st["model3d"])
  obs = _host_observations(config, str(st["workdir"]), st["model3d"], st["exs"])
  assert obs["det_all"].sum() > setup["obs"]["det_all"].sum()     # sub-pixel finds more
  _, lm_eval = _eval_path({**st, "pred": pred}, obs)
  n = len(st["images"])
  out = pred.fit_crops(st["images"], np.ones(n, np.float32), np.zeros((n, 2), np.float32))
  err = np.abs(out["landmarks_px"] - lm_eval).max(axis=(1, 2))
  assert err.max() < PX_TOL, err
