"""data.real on format-exact AFLW2000-3D / 300W-LP fixtures made here (never real data).

The fixture model is a 300-vertex cap in the 3DDFA BFM layout (199 identity, 29 expression
bases, BFM-like raw units); each .mat has the keys, shapes and dtypes of data-formats §1, and
its `pt3d_68` is computed with the files' own projection convention, written out here
independently of `geometry.projection`.
"""

import re

import numpy as np
import pytest
import scipy.io

import real_fixtures
from cprfa_jax.data import crops, real, schema, tfds_io
from cprfa_jax.geometry.projection import pose_from_pose_para, project, project_pose_para, to_pixels
from cprfa_jax.mm.bfm import load_bfm_3ddfa
from cprfa_jax.mm.model import shape

SIZE = 64


@pytest.fixture(scope="module")
def bfm(tmp_path_factory):
  path = tmp_path_factory.mktemp("bfm") / "bfm_3ddfa.mat"
  raw = real_fixtures.make_bfm(path)
  return path, load_bfm_3ddfa(path), raw


_write_example, splat_render = real_fixtures.write_example, real_fixtures.splat_render


def _aflw(root, raw, n=4, seed=1):
  return real_fixtures.write_aflw2000(root, raw, n, seed)


def _reader(dataset, root, model, **kw):
  return real.ArchiveReader(dataset, root, model, splat_render, image_size=SIZE, **kw)


def _reprojected(model, ex):
  verts = shape(model, ex["alpha_id"], ex["alpha_exp"])
  return np.asarray(to_pixels(project(verts[model.landmarks_68], ex["pose"]), (SIZE, SIZE)))


def test_aflw2000_examples_follow_the_schema_and_pt3d(tmp_path, bfm):
  path, model, raw = bfm
  root = _aflw(tmp_path / "AFLW2000", raw)
  exs = list(_reader("aflw2000", root, model))
  assert len(exs) == 4
  spec = schema.feature_spec((SIZE, SIZE), model.num_id, model.num_exp)
  for i, ex in enumerate(exs):
    # The synthetic reader is held to the same spec: same keys, shapes, dtypes.
    assert {k: (np.shape(v), np.asarray(v).dtype) for k, v in ex.items()} == \
        {k: (s, np.dtype(d)) for k, (s, d) in spec.items()}
    schema.check_example(ex, (SIZE, SIZE), model.num_id, model.num_exp)
    mat = scipy.io.loadmat(root / f"image{i + 2:05d}.mat")
    assert ex["yaw"] == pytest.approx(-np.degrees(mat["Pose_Para"][0, 1]), abs=1e-4)
    # pt3d_68 came from the files' convention; the converted, cropped pose must land on it.
    np.testing.assert_allclose(_reprojected(model, ex), ex["landmarks"], atol=1e-2)
    lo, hi = ex["landmarks"].min(0), ex["landmarks"].max(0)
    assert max(hi - lo) == pytest.approx(SIZE / 2, abs=1.0)  # box_scale 2: half the crop
    assert ex["mask"].any() and ex["dafi"][ex["mask"]].max() <= 1.0


def test_300wlp_layout_and_projected_landmarks(tmp_path, bfm):
  _, model, raw = bfm
  rng = np.random.default_rng(2)
  root = tmp_path / "300W_LP"
  for stem in ["AFW/AFW_134212_1_0", "AFW/AFW_134212_1_3", "AFW_Flip/AFW_134212_1_0",
               "IBUG/IBUG_image_003_1_0"]:
    _write_example(root / stem, raw, rng, pts2d=68)
  (root / "landmarks" / "AFW").mkdir(parents=True)  # other annotations: not examples
  scipy.io.savemat(root / "landmarks/AFW/AFW_134212_1_0_pts.mat", {"pts_2d": np.zeros((68, 2))})
  reader = _reader("300wlp", root, model)
  exs = list(reader)
  assert [p[0].relative_to(root).as_posix() for p in reader.pairs] == [
      "AFW/AFW_134212_1_0", "AFW/AFW_134212_1_3", "AFW_Flip/AFW_134212_1_0",
      "IBUG/IBUG_image_003_1_0"]
  assert len(_reader("300wlp", root, model, include_flip=False)) == 3
  for (stem, _, mat), ex in zip(reader.pairs, exs):
    schema.check_example(ex, (SIZE, SIZE), model.num_id, model.num_exp, source=str(stem))
    # Independent reference: the files' own projection of the model's raw landmarks, then
    # the crop's pixel map k p + b.
    ann = scipy.io.loadmat(mat)
    n = raw["u"].size // 3
    x = (raw["u"][:, 0] + raw["w_shp"] @ ann["Shape_Para"][:, 0]
         + raw["w_exp"] @ ann["Exp_Para"][:, 0]).reshape(n, 3)
    full = np.asarray(project_pose_para(x[np.asarray(model.landmarks_68)], ann["Pose_Para"],
                                        (450, 450)), np.float64)
    k, b = crops.crop_affine(*crops.crop_box(full, 2.0), SIZE)
    np.testing.assert_allclose(ex["landmarks"], k * full + b, atol=1e-2)
    np.testing.assert_allclose(_reprojected(model, ex), ex["landmarks"], atol=1e-2)


def test_crop_pose_moves_projections_like_pixels():
  rng = np.random.default_rng(3)
  pts = rng.normal(size=(50, 3))
  for hw_src in [(450, 450), (300, 420)]:
    pose = np.array([0.2, -0.7, 0.1, 0.4, 0.1, -0.2])
    x0, y0, side = 37, -20, 311
    k, b = crops.crop_affine(x0, y0, side, SIZE)
    src = np.asarray(to_pixels(project(pts, pose), hw_src))
    new = crops.crop_pose(pose, hw_src, k, b, (SIZE, SIZE))
    np.testing.assert_allclose(to_pixels(project(pts, new), (SIZE, SIZE)), k * src + b,
                               atol=1e-4)


def test_crop_resize_matches_crop_affine():
  # A linear ramp in x and y: after crop + resize, the value at crop pixel (u, v) is the
  # ramp at the source pixel k^-1 ((u, v) - b), if the affine map is the image's.
  ys, xs = np.mgrid[:450, :450]
  image = np.stack([xs * 0.5, ys * 0.5, np.zeros_like(xs)], -1).astype(np.uint8)
  x0, y0, side = 60, 90, 256
  out = crops.crop_resize(image, x0, y0, side, SIZE)
  k, b = crops.crop_affine(x0, y0, side, SIZE)
  u = np.arange(SIZE)
  np.testing.assert_allclose(out[0, :, 0], 0.5 * (u - b[0]) / k, atol=1.0)
  np.testing.assert_allclose(out[:, 0, 1], 0.5 * (u - b[1]) / k, atol=1.0)


def test_pose_para_yaw_sign():
  """Documented in data.real: for a pure yaw, the pose's r_y is minus Pose_Para's yaw."""
  pose = pose_from_pose_para([0.0, 0.6, 0.0, 225, 225, 0, 1e-3], np.zeros(3), 1e-5, (450, 450))
  np.testing.assert_allclose(np.asarray(pose[:3]), [0.0, -0.6, 0.0], atol=1e-6)


def _corrupt(root, raw):
  """An archive of 8 files, 6 of them bad in different ways. Returns {name: expected msg}."""
  _aflw(root, raw, n=8)
  names = [f"image{i + 2:05d}" for i in range(8)]
  (root / f"{names[1]}.jpg").write_bytes(b"not a jpeg at all")
  data = (root / f"{names[2]}.jpg").read_bytes()
  (root / f"{names[2]}.jpg").write_bytes(data[:len(data) // 2])  # truncated download
  (root / f"{names[3]}.mat").unlink()
  (root / f"{names[4]}.jpg").unlink()
  d = {k: v for k, v in scipy.io.loadmat(root / f"{names[5]}.mat").items()
       if not k.startswith("__")}
  d["Pose_Para"][0, 2] = np.nan
  scipy.io.savemat(root / f"{names[5]}.mat", d)
  d["Pose_Para"][0, 2] = 0.0
  d["Shape_Para"] = d["Shape_Para"][:198]
  scipy.io.savemat(root / f"{names[6]}.mat", d)
  (root / f"{names[7]}.mat").write_bytes(b"MATLAB 5.0 MAT-file, garbage")
  return {names[1]: "not a complete JPEG", names[2]: "not a complete JPEG",
          names[3]: r"\.mat: missing", names[4]: r"\.jpg: missing",
          names[5]: "Pose_Para holds NaN", names[6]: "Shape_Para has shape",
          names[7]: r"unreadable \.mat"}


def test_bad_files_are_skipped_and_counted(tmp_path, bfm, capsys):
  _, model, raw = bfm
  root = tmp_path / "AFLW2000"
  bad = _corrupt(root, raw)
  reader = _reader("aflw2000", root, model, on_error="skip")
  exs = list(reader)
  assert len(exs) == 1 and reader.num_written == 1
  assert [p for p, _ in reader.skipped] == sorted(bad)
  out = capsys.readouterr().out
  for name, msg in bad.items():
    assert any(name in line and re.search(msg, line)
               for line in out.splitlines()), (name, msg, out)
  assert "1 examples from 8 files" in out and "skipped 7" in out


def test_bad_files_stop_with_the_path(tmp_path, bfm):
  _, model, raw = bfm
  root = tmp_path / "AFLW2000"
  _corrupt(root, raw)
  with pytest.raises(real.ExampleError, match=r"image00003\.jpg: not a complete JPEG"):
    list(_reader("aflw2000", root, model, on_error="stop"))


def test_no_renderer_is_a_clear_error(tmp_path, bfm):
  with pytest.raises(ValueError, match="render_fn is required"):
    real.ArchiveReader("aflw2000", tmp_path, bfm[1])


def test_cli_builds_a_tfds_dataset(tmp_path, bfm, monkeypatch, capsys):
  path, model, raw = bfm
  root = _aflw(tmp_path / "AFLW2000", raw, n=3)
  (root / "image00003.jpg").write_bytes(b"\xff\xd8 broken")
  monkeypatch.setattr(real, "default_render_fn", lambda: splat_render)
  out = tmp_path / "tfds"
  real.main(["--dataset", "aflw2000", "--root", str(root), "--bfm", str(path), "--out", str(out),
             "--image-size", str(SIZE), "--on-error", "skip"])
  assert "skipped 1" in capsys.readouterr().out
  src = tfds_io.read_dataset(f"cprfa_aflw2000_{SIZE}", out, "test")
  assert len(src) == 2
  assert src.metadata["skipped"] == ["image00003"] and src.metadata["num_id"] == 199
  want = list(_reader("aflw2000", root, model, on_error="skip", raw_params=True))
  for i, ex in enumerate(want):
    assert set(src[i]) == set(schema.feature_spec((1, 1), 1, 1)) | set(real.RAW_SPEC)
    for key in ex:
      np.testing.assert_array_equal(src[i][key], ex[key])
  with pytest.raises(SystemExit, match="already exists"):  # user errors: a message, no trace
    real.main(["--dataset", "aflw2000", "--root", str(root), "--bfm", str(path),
               "--out", str(out), "--image-size", str(SIZE)])


def test_default_renderer_gives_a_dafi(tmp_path, bfm):
  """The CLI's render_fn is the project's z-buffer renderer (`cprfa_jax.render.render`)."""
  _, model, raw = bfm
  try:
    render_fn = real.default_render_fn()
  except RuntimeError as e:
    pytest.skip(str(e))
  root = _aflw(tmp_path / "AFLW2000", raw, n=1)
  ex, = real.ArchiveReader("aflw2000", root, model, render_fn, image_size=32)
  schema.check_example(ex, (32, 32), model.num_id, model.num_exp)
  assert ex["mask"].any() and not ex["dafi"][~ex["mask"]].any()
