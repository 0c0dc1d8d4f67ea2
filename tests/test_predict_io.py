"""predict.photos, predict.boxes and predict.outputs: the predictor's host-side input / output."""

import json
import os

import cv2
import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from cprfa_jax import mm
from cprfa_jax.predict import boxes, outputs, photos
from cprfa_jax.report import draw


def _photo(h=96, w=128, seed=0):
  """A smooth RGB test picture (compresses like a photo, not like noise)."""
  y, x = np.mgrid[0:h, 0:w]
  rng = np.random.default_rng(seed)
  img = np.stack([x * 255 / w, y * 255 / h, 128 + 60 * np.sin(x / 7.0 + y / 11.0)], -1)
  return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def _write(path, img, ext=None):
  ok, buf = cv2.imencode(ext or os.path.splitext(str(path))[1], img)
  assert ok
  path.write_bytes(buf.tobytes())
  return path


def _one_line_naming(err, path):
  msg = str(err.value)
  assert "\n" not in msg and str(path) in msg, msg
  return msg


# ----------------------------------------------------------------------------------------------
# photos

def test_load_photo_colour_roundtrip(tmp_path):
  rgb = _photo()
  path = _write(tmp_path / "a.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
  out, notes = photos.load_photo(path)
  assert out.dtype == np.uint8 and out.shape == rgb.shape and notes == []
  np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("content, word", [(b"", "empty"), (b"hello, not an image" * 10, "decode")])
def test_load_photo_refuses_bad_bytes(tmp_path, content, word):
  path = tmp_path / "bad.jpg"
  path.write_bytes(content)
  with pytest.raises(photos.PhotoError) as err:
    photos.load_photo(path)
  assert word in _one_line_naming(err, path)


def test_load_photo_missing_file(tmp_path):
  with pytest.raises(photos.PhotoError) as err:
    photos.load_photo(tmp_path / "nope.jpg")
  _one_line_naming(err, tmp_path / "nope.jpg")


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_load_photo_refuses_truncated(tmp_path, ext):
  data = _write(tmp_path / f"full{ext}", _photo(200, 240)).read_bytes()
  path = tmp_path / f"cut{ext}"
  path.write_bytes(data[:len(data) // 2])
  # (OpenCV 4 decodes a cut JPEG silently, partly grey; the end-marker check catches it.)
  with pytest.raises(photos.PhotoError) as err:
    photos.load_photo(path)
  assert "truncated" in _one_line_naming(err, path)
  photos.load_photo(tmp_path / f"full{ext}")  # the whole file is fine


def test_load_photo_grayscale(tmp_path):
  grey = _photo()[..., 0]
  path = _write(tmp_path / "g.png", grey)
  out, notes = photos.load_photo(path)
  assert out.shape == grey.shape + (3,)
  np.testing.assert_array_equal(out[..., 1], grey)
  assert len(notes) == 1 and "grayscale" in notes[0] and str(path) in notes[0]


def test_load_photo_rgba(tmp_path):
  rgb = _photo()
  bgra = np.concatenate([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), np.full(rgb.shape[:2] + (1,), 7,
                                                                        np.uint8)], -1)
  path = _write(tmp_path / "a.png", bgra)
  out, notes = photos.load_photo(path)
  np.testing.assert_array_equal(out, rgb)
  assert len(notes) == 1 and "alpha" in notes[0] and "\n" not in notes[0]


def test_load_photo_16bit(tmp_path):
  rgb16 = _photo().astype(np.uint16) * 257  # 8-bit values spread over 16 bits
  rgb16[0, 0] = 65535
  path = _write(tmp_path / "deep.png", cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
  out, notes = photos.load_photo(path)
  assert out.dtype == np.uint8
  np.testing.assert_array_equal(out, (rgb16 // 257).astype(np.uint8))
  assert len(notes) == 1 and "16-bit" in notes[0]


def test_load_photo_tiny(tmp_path):
  path = _write(tmp_path / "tiny.png", _photo(photos.MIN_SIDE - 1, 200))
  with pytest.raises(photos.PhotoError) as err:
    photos.load_photo(path)
  assert str(photos.MIN_SIDE) in _one_line_naming(err, path)


@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp"])  # header size (jpg, png), else decoded
def test_load_photo_huge(tmp_path, monkeypatch, ext):
  path = _write(tmp_path / f"big{ext}", _photo(64, 80))
  monkeypatch.setattr(photos, "MAX_PIXELS", 64 * 80 - 1)
  with pytest.raises(photos.PhotoError) as err:
    photos.load_photo(path)
  assert "megapixels" in _one_line_naming(err, path)
  assert photos._header_size(path.read_bytes()) in ((80, 64), None)


def test_list_images(tmp_path):
  for name in ("b.PNG", "a.jpg", "c.txt", "d.Tiff", "e.webp"):
    (tmp_path / name).write_bytes(b"x")
  (tmp_path / "sub.jpg").mkdir()
  one = tmp_path / "c.txt"
  got = photos.list_images([tmp_path, one])
  assert got == [str(tmp_path / n) for n in ("a.jpg", "b.PNG", "d.Tiff", "e.webp")] + [str(one)]
  with pytest.raises(photos.PhotoError) as err:
    photos.list_images([tmp_path / "missing"])
  _one_line_naming(err, tmp_path / "missing")


# ----------------------------------------------------------------------------------------------
# boxes

def test_read_boxes_csv_and_json_roundtrip(tmp_path):
  table = {"a.jpg": [(1.0, 2.0, 30.5, 40.0), (50.0, 5.0, 90.0, 60.0)], "b.png": [(0, 0, 10, 12)]}
  csv_path = tmp_path / "boxes.csv"
  csv_path.write_text("image,x0,y0,x1,y1\n" + "".join(
      f"{n},{b[0]},{b[1]},{b[2]},{b[3]}\n" for n, bs in table.items() for b in bs))
  json_path = tmp_path / "boxes.json"
  json_path.write_text(json.dumps({n: [list(b) for b in bs] for n, bs in table.items()}))
  for path in (csv_path, json_path):
    got = boxes.read_boxes(path)
    assert got == {n: [tuple(map(float, b)) for b in bs] for n, bs in table.items()}


@pytest.mark.parametrize("text, where", [
    ("image,x,y,x1,y1\na.jpg,1,2,3,4\n", "first line"),
    ("image,x0,y0,x1,y1\na.jpg,1,2,30,40\na.jpg,1,two,3,4\n", "row 3"),
    ("image,x0,y0,x1,y1\na.jpg,1,2,30\n", "row 2"),
    ("image,x0,y0,x1,y1\na.jpg,1,2,30,40\nb.jpg,30,2,1,40\n", "row 3"),
    ("image,x0,y0,x1,y1\na.jpg,nan,2,30,40\n", "row 2"),
])
def test_read_boxes_refuses_bad_csv(tmp_path, text, where):
  path = tmp_path / "boxes.csv"
  path.write_text(text)
  with pytest.raises(boxes.BoxError) as err:
    boxes.read_boxes(path)
  assert where in _one_line_naming(err, path)


@pytest.mark.parametrize("doc, where", [
    ({"a.jpg": [[1, 2, 3]]}, "'a.jpg'"), ({"a.jpg": [1, 2, 3, 4]}, "'a.jpg'"),
    ({"a.jpg": "1,2,3,4"}, "'a.jpg'"), ([[1, 2, 3, 4]], "JSON object"),
    ({"ok.jpg": [[1, 2, 30, 40]], "b.jpg": [[1, 2, 30, 40], ["x", 2, 3, 4]]}, "'b.jpg', face 1"),
])
def test_read_boxes_refuses_bad_json(tmp_path, doc, where):
  path = tmp_path / "boxes.json"
  path.write_text(json.dumps(doc))
  with pytest.raises(boxes.BoxError) as err:
    boxes.read_boxes(path)
  assert where in _one_line_naming(err, path)
  path.write_text("{not json")
  with pytest.raises(boxes.BoxError):
    boxes.read_boxes(path)


def test_read_landmarks(tmp_path):
  rng = np.random.default_rng(0)
  lms = [rng.uniform(0, 100, (68, 2)) for _ in range(2)]
  path = tmp_path / "lm.json"
  path.write_text(json.dumps({"a.jpg": [l.tolist() for l in lms]}))
  got = boxes.read_landmarks(path)
  assert list(got) == ["a.jpg"] and len(got["a.jpg"]) == 2
  np.testing.assert_array_equal(got["a.jpg"][1], lms[1])
  bad = [lms[0].tolist(), lms[1][:67].tolist()]
  for faces, word in ((bad, "shape"), ([lms[0].tolist(), [[1, 2, 3]] * 68], "shape"),
                      ([[[float("nan"), 1.0]] * 68], "NaN")):
    path.write_text(json.dumps({"b.jpg": faces}))
    with pytest.raises(boxes.BoxError) as err:
      boxes.read_landmarks(path)
    msg = _one_line_naming(err, path)
    assert word in msg and "'b.jpg'" in msg and f"face {len(faces) - 1}" in msg


def test_landmark_box():
  lm = np.array([[3.0, 9.0], [7.0, 2.0]] + [[5.0, 5.0]] * 66)
  np.testing.assert_array_equal(boxes.landmark_box(lm), [3, 2, 7, 9])


@pytest.mark.parametrize("box, ok", [
    ((10, 10, 50, 60), True), ((-20, -20, 30, 30), True), ((90, 70, 200, 150), True),
    ((50, 10, 10, 60), False), ((10, 10, 50, float("nan")), False), ((10, 10, 15, 60), False),
    ((-80, 10, -5, 60), False), ((10, 100, 50, 160), False), ((10, 10, 50), False),
])
def test_check_box(box, ok):
  if ok:
    boxes.check_box(box, (100, 120), "x.jpg")
  else:
    with pytest.raises(boxes.BoxError) as err:
      boxes.check_box(box, (100, 120), "x.jpg")
    _one_line_naming(err, "x.jpg")


def test_detect_faces_blank():
  blank = np.full((240, 320, 3), 128, np.uint8)
  if boxes.haar_available():
    assert boxes.detect_faces(blank) == []
  else:  # OpenCV 5 wheels ship no cascades: a one-line error telling the user what to do
    with pytest.raises(boxes.BoxError, match="--boxes"):
      boxes.detect_faces(blank)


def test_nms_keeps_best_of_overlapping():
  b = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float)
  assert boxes.nms(b, [1.0, 2.0, 0.5]) == [1, 2]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(boxes.RULES)), st.floats(-500, 500), st.floats(-500, 500),
       st.floats(4, 400), st.floats(4, 400))
def test_detector_to_landmark_box_is_the_documented_affine(kind, x0, y0, w, h):
  sx, sy, dx, dy = boxes.RULES[kind]
  out = boxes.detector_to_landmark_box([x0, y0, x0 + w, y0 + h], kind)
  np.testing.assert_allclose((out[:2] + out[2:]) / 2,
                             [x0 + w / 2 + dx * w, y0 + h / 2 + dy * h], atol=1e-6)
  np.testing.assert_allclose(out[2:] - out[:2], [sx * w, sy * h], rtol=1e-9, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(st.floats(-500, 500), st.floats(-500, 500), st.floats(4, 400), st.floats(4, 400),
       st.floats(200, 2000))
def test_mirrored_profile_rule_is_the_mirror_image_of_the_profile_rule(x0, y0, w, h, width):
  # The mirrored cascade sees the photo flipped left-right: its landmark box must be the flip of
  # the profile rule's box for the flipped detection (x -> width - x).
  flip = lambda b: np.array([width - b[2], b[1], width - b[0], b[3]])
  box = np.array([x0, y0, x0 + w, y0 + h])
  np.testing.assert_allclose(boxes.detector_to_landmark_box(flip(box), "profile_mirrored"),
                             flip(boxes.detector_to_landmark_box(box, "profile")), atol=1e-6)


# ----------------------------------------------------------------------------------------------
# outputs

@pytest.fixture(scope="module")
def model():
  return mm.load_model("synthetic:2000")


def _frontal_face(model, hw=(240, 320), failure=False):
  """A face dict as the predictor makes it: the mean shape, frontal, in the photo's middle."""
  h, w = hw
  mean = np.asarray(model.mean_Vx3, np.float64)
  f = 0.25 * min(hw)  # px per model unit
  verts = np.stack([(w - 1) / 2 + f * mean[:, 0], (h - 1) / 2 - f * mean[:, 1], f * mean[:, 2]], -1)
  lm = verts[np.asarray(model.landmarks_68), :2]
  s = 64
  dafi = np.random.default_rng(0).uniform(0, 1, (s, s, 3)).astype(np.float32)
  mask = np.zeros((s, s), bool)
  mask[16:48, 16:48] = True
  return {"box": boxes.landmark_box(lm), "landmarks_68": lm, "pitch_yaw_roll_deg": np.zeros(3),
          "pose": np.array([0, 0, 0, 0.5, 0, 0], np.float32), "pose_para": np.arange(7.0),
          "alpha": np.linspace(-1, 1, 50, dtype=np.float32), "vertices_px": verts,
          "confidence": float("nan") if failure else 0.031234567, "failure": failure,
          "dafi": dafi, "mask": mask, "crop": np.full((s, s, 3), 90, np.uint8)}


def test_face_json_keys_and_values(model, tmp_path):
  face = _frontal_face(model)
  doc = outputs.face_json(face)
  assert tuple(doc) == outputs.JSON_KEYS
  assert len(doc["landmarks_68"]) == 68 and all(len(p) == 2 for p in doc["landmarks_68"])
  assert doc["confidence"] == 0.031235 and doc["failure"] is False
  assert outputs.face_json(_frontal_face(model, failure=True))["confidence"] is None
  json.dumps(doc, allow_nan=False)
  path = tmp_path / "a.json"
  outputs.write_json(path, "a.jpg", [face, _frontal_face(model, failure=True)])
  back = json.loads(path.read_text())
  assert back["image"] == "a.jpg" and len(back["faces"]) == 2
  assert back["faces"][1]["failure"] is True and back["faces"][0]["box"] == doc["box"]


def test_obj_roundtrip_winding_and_colours(model, tmp_path):
  hw = (240, 320)
  face = _frontal_face(model, hw)
  verts = face["vertices_px"]
  tri = np.asarray(model.triangles_Tx3)
  y, x = np.mgrid[0:hw[0], 0:hw[1]]
  photo = np.stack([x % 256, y % 256, np.full_like(x, 77)], -1).astype(np.uint8)
  path = tmp_path / "a.obj"
  outputs.write_faces_obj(path, photo, [face, face], tri)
  v, c, t = outputs.read_obj(path)
  n = len(verts)
  assert v.shape == (2 * n, 3) and t.shape == (2 * len(tri), 3)
  np.testing.assert_array_equal(t[:len(tri)], tri)
  np.testing.assert_array_equal(t[len(tri):], tri + n)
  np.testing.assert_allclose(v[:n, 0], verts[:, 0], atol=1e-3)
  np.testing.assert_allclose(v[:n, 1], hw[0] - 1 - verts[:, 1], atol=1e-3)
  np.testing.assert_allclose(v[:n, 2], verts[:, 2], atol=1e-3)
  # Normals of the written mesh, from the file alone, point at the viewer (+z): a frontal face.
  a, b, cc = (v[t[:len(tri), i]] for i in range(3))
  nz = np.cross(b - a, cc - a)[:, 2]
  assert nz.sum() > 0 and (nz > 0).mean() > 0.7
  # Colours: bilinear samples of the photo at each vertex's pixel (R = x, G = y here).
  np.testing.assert_allclose(c[:n, 0], verts[:, 0] / 255, atol=2e-3)
  np.testing.assert_allclose(c[:n, 1], verts[:, 1] / 255, atol=2e-3)
  np.testing.assert_allclose(c[:n, 2], 77 / 255, atol=2e-3)


def test_vertex_colours_clip_outside():
  img = np.zeros((10, 20, 3), np.uint8)
  img[:, -1] = 255
  got = outputs.vertex_colours(img, np.array([[100.0, 5.0], [-3.0, 2.0], [np.nan, 1.0]]))
  np.testing.assert_allclose(got, [[1, 1, 1], [0, 0, 0], [0.5, 0.5, 0.5]])


def test_overlay_changes_the_face_only(model):
  hw = (240, 320)
  photo = np.full(hw + (3,), 100, np.uint8)
  face = _frontal_face(model, hw)
  out = outputs.overlay(photo, [face], np.asarray(model.triangles_Tx3))
  assert out.shape == photo.shape and out.dtype == np.uint8
  x0, y0, x1, y1 = face["box"].astype(int)
  changed = np.any(out != photo, -1)
  assert changed[y0:y1, x0:x1].mean() > 0.05
  assert not changed[:20, -20:].any() and not changed[-20:, :20].any()
  red = outputs.overlay(photo, [_frontal_face(model, hw, failure=True)],
                        np.asarray(model.triangles_Tx3))
  is_fail = np.all(red == outputs.FAIL_COLOUR, -1)
  assert is_fail.sum() > np.all(out == outputs.FAIL_COLOUR, -1).sum() + 50


def test_dafi_picture(model):
  faces = [_frontal_face(model), _frontal_face(model)]
  pic = outputs.dafi_picture(faces)
  assert pic.dtype == np.uint8 and pic.shape == (2 * 128 + 4, 2 * 128 + 4, 3)
  dafi_tile = pic[:128, 132:]
  assert (dafi_tile[:32] == 0).all()              # outside the mask: black
  assert dafi_tile[40:90, 40:90].mean() > 60      # inside: the DAFI's colours
  assert (pic[:128, :128] == 90).all()            # the crop
  assert outputs.dafi_picture([]).ndim == 3


def test_save_png(tmp_path):
  rgb = _photo()
  draw.save_png(tmp_path / "x.png", rgb)
  np.testing.assert_array_equal(photos.load_photo(tmp_path / "x.png")[0], rgb)
  with pytest.raises(OSError, match="missing"):
    draw.save_png(tmp_path / "missing" / "x.png", rgb)
