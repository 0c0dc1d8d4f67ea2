"""The AFLW (21 points) and COFW-68 benchmark readers on format-exact fixtures
(`benchmark_fixtures`), malformed files refused by name, the protocols' scoring in
`methods.protocol_scores`, and AFLW2000-3D's re-annotated landmarks mapped onto its tfds set.
evaluate.py scores both benchmark sets in tests/e2e/test_real_pipeline.py."""


import numpy as np
import pytest
import scipy.io

import benchmark_fixtures as bf
import real_fixtures
from cprfa_jax.data import aflw, cofw, real, tfds_io
from cprfa_jax.data.crops import ExampleError
from cprfa_jax.evaluate import methods
from cprfa_jax.mm.bfm import load_bfm_3ddfa
from cprfa_jax.report import published

S = 128


def expected_frame(pts68_Lx2, size, box_scale=2.0):
  """The framing written out again: (k, b) of the square of box_scale x the longer side."""
  lo, hi = pts68_Lx2.min(0), pts68_Lx2.max(0)
  side = int(round(box_scale * float(np.max(hi - lo))))
  x0, y0 = np.round((lo + hi) / 2 - side / 2).astype(int)
  k = size / side
  return k, k * (0.5 - np.array([x0, y0])) - 0.5


def bright_centre(image):
  g = image.astype(np.float64).mean(-1)
  ys, xs = np.nonzero(g > 0.5 * g.max())
  w = g[ys, xs]
  return np.array([(xs * w).sum() / w.sum(), (ys * w).sum() / w.sum()])


# --- AFLW -------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_list", [True, False])
def test_aflw_points_land_where_the_fixture_put_them(tmp_path, with_list):
  fx = bf.write_aflw(tmp_path / "aflw", 4, np.random.default_rng(3), with_list=with_list)
  aflw.build(tmp_path / "aflw", tmp_path / "data", image_size=S, log=lambda m: None)
  src = tfds_io.read_dataset(f"cprfa_aflw_{S}", tmp_path / "data")
  assert len(src) == 4 and src.metadata["protocol"] == "aflw21"
  assert src.metadata["order"].startswith("AFLW_GT_crop.list") == with_list
  a = fx["arrays"]
  for i in range(4):
    ex = src[i]
    assert ex["image"].shape == (S, S, 3) and ex["image"].dtype == np.uint8
    k, b = expected_frame(fx["crop68"][i], S)
    np.testing.assert_allclose(ex["box_points"], k * fx["crop68"][i] + b, atol=1e-3)
    p21 = a["AFLW_GT_pts21.npy"][i]
    valid = (p21[0] != -1) & (p21[1] != -1)
    np.testing.assert_array_equal(ex["points_valid"], valid)
    assert np.isnan(ex["points"][~valid]).all()
    want21 = k * bf.groups21(fx["crop68"][i].T).T + b
    np.testing.assert_allclose(ex["points"][valid], want21[valid], atol=1e-3)
    # The white disc drawn at the nose tip (iBUG 31 = AFLW point 15) is where the points say.
    assert np.linalg.norm(bright_centre(ex["image"]) - ex["box_points"][bf.NOSE]) < 1.0
    assert ex["yaw"] == a["AFLW_GT_crop_yaws.npy"][i] and ex["index"] == i


def _aflw(tmp_path):
  bf.write_aflw(tmp_path / "aflw", 3, np.random.default_rng(4))
  return tmp_path / "aflw"


@pytest.mark.parametrize("damage, message", [
    (lambda r: (r / "AFLW_GT_pts68.npy").unlink(), r"AFLW_GT_pts68.npy: missing"),
    (lambda r: np.save(r / "AFLW_GT_pts21.npy", np.zeros((3, 21, 2), np.float32)),
     r"AFLW_GT_pts21.npy: shape \(3, 21, 2\), expected \(N, 2, 21\)"),
    (lambda r: np.save(r / "AFLW_GT_crop_yaws.npy", np.float32([1, np.nan, 3])),
     r"AFLW_GT_crop_yaws.npy: NaN or inf in rows \[1\]"),
    (lambda r: np.save(r / "AFLW_GT_crop_yaws.npy", np.float32([1, 2])),
     r"disagree on the number of faces"),
    (lambda r: (r / "AFLW_GT_crop_roi_box.npy").write_bytes(b"not a npy"),
     r"AFLW_GT_crop_roi_box.npy: unreadable"),
    (lambda r: (r / "AFLW_GT_crop" / "image01007.jpg").unlink(), r"image01007.jpg: cannot read"),
    (lambda r: (r / "AFLW_GT_crop.list").write_text("image01000.jpg\n"),
     r"AFLW_GT_crop.list: 1 images but the arrays hold 3 faces"),
    (lambda r: (r / "AFLW_GT_crop" / "image01000.jpg").write_bytes(
        (r / "AFLW_GT_crop" / "image01000.jpg").read_bytes()[:200]),
     r"image01000.jpg: not a complete JPEG"),
])
def test_aflw_malformed_files_are_refused_by_name(tmp_path, damage, message):
  root = _aflw(tmp_path)
  damage(root)
  with pytest.raises(ExampleError, match=message):
    aflw.build(root, tmp_path / "data", image_size=32, log=lambda m: None)
  assert not (tmp_path / "data" / "cprfa_aflw_32").exists()


def test_aflw_cli_and_skip(tmp_path, capsys):
  root = _aflw(tmp_path)
  (root / "AFLW_GT_crop" / "image01007.jpg").write_bytes(b"\xff\xd8 broken")
  with pytest.raises(SystemExit, match=r"^error: .*image01007.jpg: not a complete JPEG"):
    aflw.main(["--root", str(root), "--out", str(tmp_path / "data"), "--image-size", "32"])
  aflw.main(["--root", str(root), "--out", str(tmp_path / "data"), "--image-size", "32",
             "--on-error", "skip"])
  src = tfds_io.read_dataset("cprfa_aflw_32", tmp_path / "data")
  assert len(src) == 2 and src.metadata["skipped"] == ["image01007.jpg"]
  assert "wrote" in capsys.readouterr().out


# --- COFW-68 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v5", "v73"])
def test_cofw_points_land_where_the_fixture_put_them(tmp_path, version):
  fx = bf.write_cofw(tmp_path / "cofw", 3, np.random.default_rng(5), version)
  p = fx["paths"]
  assert (open(p["images"], "rb").read(600)[512:516] == b"\x89HDF") == (version == "v73")
  cofw.build(p["images"], p["annotations"], p["boxes"], tmp_path / "data", image_size=S,
             log=lambda m: None)
  src = tfds_io.read_dataset(f"cprfa_cofw68_{S}", tmp_path / "data")
  assert len(src) == 3 and src.metadata["protocol"] == "cofw68"
  for i in range(3):
    ex = src[i]
    k, b = expected_frame(fx["points"][i], S)
    np.testing.assert_allclose(ex["points"], k * fx["points"][i] + b, atol=1e-3)
    np.testing.assert_array_equal(ex["box_points"], ex["points"])
    np.testing.assert_array_equal(ex["occluded"], fx["occluded"][i])
    assert ex["points_valid"].all() and ex["index"] == i
    x, y, w, h = fx["boxes"][i].astype(float)
    np.testing.assert_allclose(ex["face_box"], [k * (x - 1) + b[0], k * (y - 1) + b[1], k * w, k * h],
                               atol=1e-3)
    assert np.linalg.norm(bright_centre(ex["image"]) - ex["points"][bf.NOSE]) < 1.0
  gray = src[1]["image"]       # the fixture's image 2 is grayscale: repeated to RGB
  assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
  assert fx["images"][1].ndim == 2


def _cofw(tmp_path, version="v5"):
  return bf.write_cofw(tmp_path / "cofw", 3, np.random.default_rng(6), version)["paths"]


@pytest.mark.parametrize("damage, message", [
    (lambda p: scipy.io.savemat(p["images"], {"Is": np.zeros(3)}), r"COFW_test_color.mat: missing key 'IsT'"),
    (lambda p: p["images"].write_bytes(b"MATLAB junk"), r"COFW_test_color.mat: unreadable \.mat"),
    (lambda p: scipy.io.savemat(p["boxes"], {"bboxes": np.zeros((2, 4))}),
     r"cofw68_test_bboxes.mat: bboxes has shape \(2, 4\), expected \(3, 4\)"),
    (lambda p: scipy.io.savemat(p["annotations"] / "2_points.mat",
                                {"Points": np.full((68, 2), np.nan), "Occ": np.zeros((1, 68))}),
     r"2_points.mat: Points holds NaN"),
    (lambda p: scipy.io.savemat(p["annotations"] / "3_points.mat",
                                {"Points": np.zeros((29, 2)), "Occ": np.zeros((1, 68))}),
     r"3_points.mat: Points has shape \(29, 2\), expected \(68, 2\)"),
    (lambda p: (p["annotations"] / "1_points.mat").unlink(), r"1_points.mat: missing"),
    (lambda p: scipy.io.savemat(p["annotations"] / "4_points.mat", {"Points": np.zeros((68, 2))}),
     r"1 annotation files beyond the 3 images"),
])
def test_cofw_malformed_files_are_refused_by_name(tmp_path, damage, message):
  p = _cofw(tmp_path)
  damage(p)
  with pytest.raises(ExampleError, match=message):
    cofw.build(p["images"], p["annotations"], p["boxes"], tmp_path / "data", image_size=32,
               log=lambda m: None)


def test_cofw_v73_missing_key_and_bad_image(tmp_path):
  p = _cofw(tmp_path, "v73")
  bf._savemat73(p["images"], {}, {"IsT": [np.zeros((40, 40, 3), np.uint8)] * 2 + [np.zeros(5)]})
  with pytest.raises(ExampleError, match=r"IsT\{3\}: image of shape \(5,\)"):
    cofw.build(p["images"], p["annotations"], p["boxes"], tmp_path / "data", image_size=32,
               log=lambda m: None)
  bf._savemat73(p["images"], {"bboxesT": np.zeros((3, 4))}, {})
  with pytest.raises(ExampleError, match=r"COFW_test_color.mat: missing key 'IsT'"):
    cofw.build(p["images"], p["annotations"], p["boxes"], tmp_path / "data", image_size=32)


# --- protocols --------------------------------------------------------------------------------


def test_protocol_scores_follow_each_protocol():
  rng = np.random.default_rng(7)
  gt68 = np.stack([bf.face68([60, 60], 50, rng) for _ in range(3)])
  pred = gt68 + rng.normal(0, 2, gt68.shape)
  box = np.array([np.sqrt(np.ptp(g[:, 0]) * np.ptp(g[:, 1])) for g in gt68])
  # AFLW: 21 points from the prediction's groups, annotated ones only, the 68 box.
  gt21 = np.stack([bf.groups21(g.T).T for g in gt68]) + 1.0
  valid = rng.random((3, 21)) < 0.8
  obs = {"points": np.where(valid[..., None], gt21, np.nan), "points_valid": valid,
         "box_points": gt68}
  s = methods.protocol_scores("aflw21", pred, obs)
  p21 = np.stack([bf.groups21(p.T).T for p in pred])
  want = [np.linalg.norm(p21[i] - gt21[i], axis=1)[valid[i]].mean() / box[i] for i in range(3)]
  np.testing.assert_allclose(s["nme"], want, rtol=1e-5)
  assert set(s) == {"nme", "gt_px"}
  # COFW: the 51 inner points, occluded included; box and inter-ocular normalisers.
  occ = rng.random((3, 68)) < 0.3
  s = methods.protocol_scores("cofw68", pred, {"points": gt68, "occluded": occ})
  err = np.linalg.norm(pred - gt68, axis=2)[:, 17:].mean(1)
  io = np.linalg.norm(gt68[:, 36:42].mean(1) - gt68[:, 42:48].mean(1), axis=1)
  np.testing.assert_allclose(s["nme"], err / box, rtol=1e-5)
  np.testing.assert_allclose(s["nme_interocular"], err / io, rtol=1e-5)
  # AFLW2000-3D / synthetic: all 68 (or synth-cofw's 51) over the 68 box.
  s = methods.protocol_scores(None, pred, {"landmarks": gt68})
  np.testing.assert_allclose(s["nme"], np.linalg.norm(pred - gt68, axis=2).mean(1) / box, rtol=1e-5)
  with pytest.raises(ValueError, match="unknown protocol 'x'"):
    methods.protocol_scores("x", pred, {})


def test_table_row_without_yaw_reports_the_mean_over_images():
  row = methods.table_row(np.array([0.02, 0.04, 0.2]), None, 0.1)
  assert row["nme_bins"] == [None] * 3 and row["nme_std"] is None
  assert row["nme_mean"] == pytest.approx(100 * 0.26 / 3, abs=0.01) and row["failure"] == 33.33
  assert "| 8.67 | – |" in methods.table2_md("t", {"m": row}, 51)


def test_published_rows_are_the_papers():
  r = published.rows("aflw21")
  assert r["3DDFA"]["nme_mean"] == 5.60 and r["3DSTN"]["nme_bins"] == [3.55, 3.92, 5.21]
  assert r["CPRFA (paper)"]["nme_std"] == 0.76 and r["PAWF"]["nme_mean"] is None
  assert all(v["status"] == "published, not run" for v in r.values())
  assert published.rows("aflw2000")["LDFC"]["nme_mean"] == 6.41
  assert "3DDA+SDM" in published.rows("aflw2000") and published.rows(None) == {}
  assert published.protocol_of({"source": "aflw2000"}) == "aflw2000"
  assert published.protocol_of({"protocol": "cofw68"}) == "cofw68"
  assert published.protocol_of({"source": "synthetic"}) is None


# --- AFLW2000-3D re-annotated -----------------------------------------------------------------


def test_reannotated_landmarks_map_onto_the_aflw2000_set(tmp_path):
  raw = real_fixtures.make_bfm(tmp_path / "bfm.mat")
  model = load_bfm_3ddfa(tmp_path / "bfm.mat")
  root = real_fixtures.write_aflw2000(tmp_path / "AFLW2000", raw, n=4)
  # A bad file is skipped: the mapping must skip its row too.
  (root / "image00003.jpg").write_bytes(b"broken")
  real.build("aflw2000", root, model, tmp_path / "data", render_fn=real_fixtures.splat_render,
             image_size=64, on_error="skip", log=lambda m: None)
  src = tfds_io.read_dataset("cprfa_aflw2000_64", tmp_path / "data")
  assert len(src) == 3
  stems = sorted(p.stem for p in root.glob("*.mat"))
  pt3d = np.stack([scipy.io.loadmat(root / f"{s}.mat")["pt3d_68"][:2] for s in stems])
  shift = np.random.default_rng(8).normal(0, 3, (4, 2, 68))
  path = tmp_path / "AFLW2000-3D-Reannotated.pts68.npy"
  np.save(path, (pt3d + shift).astype(np.float32))           # (N, 2, 68), sorted order
  got = aflw.reannotated_points(src, path)
  for j, i in enumerate([0, 2, 3]):                          # row 1 (image00003) was skipped
    lm = pt3d[i].T - 1.0
    k, _ = expected_frame(lm, 64)
    np.testing.assert_allclose(got[j], src[j]["landmarks"] + k * shift[i].T, atol=2e-3)
  np.save(path, np.zeros((4, 68, 2), np.float32))
  with pytest.raises(ValueError, match=r"Reannotated.pts68.npy: shape \(4, 68, 2\), expected"):
    aflw.reannotated_points(src, path)
  with pytest.raises(ValueError, match="not an AFLW2000-3D set"):
    bf.write_aflw(tmp_path / "aflw", 2)
    aflw.build(tmp_path / "aflw", tmp_path / "data", image_size=32, log=lambda m: None)
    aflw.reannotated_points(tfds_io.read_dataset("cprfa_aflw_32", tmp_path / "data"), path)
