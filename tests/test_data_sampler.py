"""Synthetic in-the-wild examples: ground truth consistent with the image, deterministic."""

import functools

import cv2

import numpy as np
import pytest

from cprfa_jax import render
from cprfa_jax.data import datasets, sampler, schema, wild
from cprfa_jax.geometry import projection
from cprfa_jax.mm import load_model, shape, synthetic_model
from conftest import SFM_DIR, requires_sfm

SIZE = 64


@functools.lru_cache(maxsize=1)
def model():
  return synthetic_model(num_vertices=2500, num_id=10, num_exp=5)


@functools.lru_cache(maxsize=4)
def examples(name, num=6):
  return list(datasets.examples(model(), name, SIZE, num=num))


def test_examples_follow_the_schema():
  m = model()
  spec = schema.feature_spec((SIZE, SIZE), m.num_id, m.num_exp)
  for ex in examples("synth-aflw"):
    # Same keys, shapes and dtypes as the real readers (tests/test_data_real.py).
    assert {k: (np.shape(v), np.asarray(v).dtype) for k, v in ex.items()} == \
        {k: (s, np.dtype(d)) for k, (s, d) in spec.items()}


def test_same_seed_same_example_and_sets_differ():
  a = examples("synth-aflw")
  b = list(datasets.examples(model(), "synth-aflw", SIZE, num=2, start=4))
  for x, y in zip(a[4:], b):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
  c = examples("synth-cofw")
  assert not np.array_equal(a[0]["alpha_id"], c[0]["alpha_id"])


def test_landmarks_reproject_from_pose_and_shape():
  m = model()
  for ex in examples("synth-aflw"):
    verts = shape(m, ex["alpha_id"], ex["alpha_exp"])
    lm = projection.to_pixels(projection.project(verts[m.landmarks_68], ex["pose"]), (SIZE, SIZE))
    np.testing.assert_allclose(lm, ex["landmarks"], atol=1e-3)
    np.testing.assert_allclose(np.degrees(ex["pose"][1]), ex["yaw"], atol=1e-3)


def test_yaw_balanced_over_bins():
  yaws = np.abs([ex["yaw"] for ex in examples("synth-aflw")])
  bins = np.digitize(yaws, [30, 60], right=True)
  np.testing.assert_array_equal(bins, [0, 1, 2, 0, 1, 2])


def test_dafi_matches_mask_and_occluders_remove_pixels():
  for ex in examples("synth-cofw"):
    assert np.all(ex["dafi"][~ex["mask"]] == 0)
    assert np.all(ex["dafi"][ex["mask"]].max(-1) > 0)
  # Occluders: the composite's visible mask loses exactly the occluded face pixels.
  rng = np.random.default_rng(0)
  face = np.zeros((SIZE, SIZE), bool)
  face[10:50, 15:45] = True
  occ = wild.random_occluder(rng, (SIZE, SIZE), np.array([[15.0, 10.0], [45.0, 50.0]] * 34),
                             kind="bar")
  img, visible = wild.composite(np.ones((SIZE, SIZE, 3), np.float32), face,
                                np.zeros((SIZE, SIZE, 3), np.float32), [occ])
  assert occ[1][face].any()
  np.testing.assert_array_equal(visible, face & ~occ[1])
  np.testing.assert_allclose(img[occ[1]], occ[0][occ[1]])


def test_heavy_occlusion_hides_more_than_mild():
  m = model()
  frac = {}
  for occ in ("none", "heavy"):
    cfg = sampler.SamplerConfig(image_size=SIZE, occlusion=occ, max_yaw=10)
    exs = sampler.generate(m, range(8), cfg, stream=9)
    frac[occ] = np.mean([1 - ex["landmarks_visible"].mean() for ex in exs])
  assert frac["heavy"] > frac["none"] + 0.05


@pytest.mark.parametrize("yaw", [0.0, 80.0])
def test_depth_visibility(yaw):
  m = model()
  verts = np.asarray(m.mean_Vx3)
  pose = np.asarray(sampler.frame_pose(verts[np.asarray(m.landmarks_68)], [0.0, yaw, 0.0], 2.0))
  out = render.render(m, verts, pose, (SIZE, SIZE))
  cam = np.asarray(projection.camera_points(verts, pose))
  pix = np.concatenate([np.asarray(projection.to_pixels(cam[:, :2], (SIZE, SIZE))), cam[:, 2:]], -1)
  lm = np.asarray(m.landmarks_68)
  vis = sampler.depth_visible(pix[lm], np.asarray(out.tri_id), np.asarray(out.bary),
                              np.asarray(m.triangles_Tx3), cam[:, 2], sampler.DEPTH_TOL * pose[3])
  if yaw == 0:
    assert vis[17:68].all()          # brows, eyes, nose, mouth of a frontal face
  else:
    # Yaw +80: the nose turns to the image's right; the subject's left eye (42-47, x > 0 in
    # the model) goes behind the nose, the right eye (36-41) stays in view.
    assert vis[36:42].mean() > 0.8 and vis[42:48].mean() < 0.2


def test_train_stream_is_deterministic_and_resumable():
  m = model()
  s1 = datasets.TrainStream(m, batch_size=4, image_size=SIZE)
  b0, b1 = next(s1), next(s1)
  s1.close()
  s2 = datasets.TrainStream(m, batch_size=4, image_size=SIZE, start_batch=1)
  r1 = next(s2)
  s2.close()
  for k in b1:
    np.testing.assert_array_equal(b1[k], r1[k])
  assert b0["image"].shape == (4, SIZE, SIZE, 3)
  assert not np.array_equal(b0["image"], b1["image"])


def test_fixed_set_round_trip(tmp_path):
  m = model()
  path = datasets.build_set(m, "synth-cofw", tmp_path, SIZE, num=3)
  src = datasets.load_set("synth-cofw", m, tmp_path, SIZE)
  assert len(src) == 3 and src.metadata["set"] == "synth-cofw"
  for a, b in zip(examples("synth-cofw"), [src[i] for i in range(3)]):
    for k in a:
      np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
  with pytest.raises(FileExistsError):
    datasets.build_set(m, "synth-cofw", tmp_path, SIZE, num=3)
  assert path.exists()


def test_bad_config_names_the_value():
  with pytest.raises(ValueError, match="occlusion='lots'"):
    sampler.SamplerConfig(occlusion="lots")
  with pytest.raises(ValueError, match="unknown data set"):
    datasets.set_config("aflw", 64)


@requires_sfm
def test_sampler_works_with_the_surrey_face_model():
  m = load_model(f"sfm:{SFM_DIR}")
  exs = list(datasets.examples(m, "synth-aflw", SIZE, num=3))
  for ex in exs:
    schema.check_example(ex, (SIZE, SIZE), m.num_id, m.num_exp, source="sfm example")
    assert ex["mask"].mean() > 0.05
    verts = shape(m, ex["alpha_id"], ex["alpha_exp"])
    lm = projection.to_pixels(projection.project(verts[m.landmarks_68], ex["pose"]), (SIZE, SIZE))
    np.testing.assert_allclose(lm, ex["landmarks"], atol=1e-3)


def test_train_stream_close_waits_for_a_slow_batch(monkeypatch):
  # A batch slower than the 5 s close() once waited: the thread must be gone when close()
  # returns, or the interpreter's exit kills it inside XLA and the process aborts.
  import threading  # pylint: disable=import-outside-toplevel
  import time  # pylint: disable=import-outside-toplevel
  started = threading.Event()
  real = sampler.generate

  def slow(*args, **kwargs):
    started.set()
    time.sleep(6.0)
    return real(*args, **kwargs)

  monkeypatch.setattr(sampler, "generate", slow)
  s = datasets.TrainStream(model(), batch_size=2, image_size=SIZE)
  assert started.wait(10)
  s.close()
  assert not s._thread.is_alive()  # pylint: disable=protected-access


@functools.lru_cache(maxsize=2)
def _with_and_without_head(occlusion):
  cfg = dict(occlusion=occlusion, photometric=0.0)
  seeds = range(6)
  with_head = sampler.generate(model(), seeds, datasets.set_config("synth-aflw", SIZE, head=True,
                                                                   **cfg), 9)
  alone = sampler.generate(model(), seeds, datasets.set_config("synth-aflw", SIZE, **cfg), 9)
  return with_head, alone


def test_heads_change_the_image_around_the_face_not_its_ground_truth():
  with_head, alone = _with_and_without_head("none")
  drawn = 0
  for h, a in zip(with_head, alone):
    # Same face, pose and landmarks; the mask only loses pixels (an ear, in profile) and the
    # DAFI is unchanged wherever it is face.
    for k in ("alpha_id", "alpha_exp", "pose", "landmarks", "yaw"):
      np.testing.assert_array_equal(h[k], a[k])
    assert not (h["mask"] & ~a["mask"]).any()
    np.testing.assert_array_equal(h["dafi"][h["mask"]], a["dafi"][h["mask"]])
    # A landmark on a face pixel is hidden by the head or stays as it was; one just off the
    # silhouette (the pixel was background) may now be judged against the neck behind it.
    r, c = (np.clip(np.round(a["landmarks"][:, k]).astype(int), 0, SIZE - 1) for k in (1, 0))
    on_face = a["mask"][r, c]
    assert not (h["landmarks_visible"] & ~a["landmarks_visible"] & on_face).any()
    # Face pixels keep their colour but near the boundary, whose vertices' normals now average
    # the head's triangles too (the seamless join): the triangles there are ~2 px at 64 px.
    # Inside, one level of float32 rounding: another compiled program (more vertices) shades.
    inner = cv2.distanceTransform(h["mask"].astype(np.uint8), cv2.DIST_L2, 3) > 3.5
    assert np.abs(h["image"][inner].astype(int) - a["image"][inner]).max() <= 1
    drawn += int((h["image"] != a["image"]).any(-1)[~a["mask"]].sum())
  assert drawn > 6 * 0.1 * SIZE * SIZE   # head, neck and shoulders: 18% of the image here


def test_heads_are_a_pure_function_of_the_seed():
  with_head, _ = _with_and_without_head("mild")
  again = sampler.generate(model(), range(6), datasets.set_config(
      "synth-aflw", SIZE, head=True, occlusion="mild", photometric=0.0), 9)
  for x, y in zip(with_head, again):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
