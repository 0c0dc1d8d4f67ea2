"""studies.real_photos' pure parts: iBUG-68's mirror permutation (against the procedural face,
which is left-right symmetric), flips as involutions, the 3DDFA normaliser against a NumPy loop,
the annotation reader's errors and the summary's grouping."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cprfa_jax.geometry import projection
from cprfa_jax.mm import synthetic_model
from cprfa_jax.studies import real_photos as rp


def test_the_flip_permutation_maps_a_frontal_symmetric_face_onto_its_mirror_image():
  m = synthetic_model(num_vertices=1500, num_id=4, num_exp=2)
  lm3d = np.asarray(m.mean_Vx3)[np.asarray(m.landmarks_68)]
  pose = np.array([0.0, 0.0, 0.0, 0.6, 0.0, 0.0], np.float32)
  px = np.asarray(projection.to_pixels(projection.project(lm3d, pose), (64, 64)))
  # The image is centred on the face: the mirror of a symmetric face is the face.
  np.testing.assert_allclose(rp.flip_landmarks(px, 64), px, atol=1e-4)
  assert sorted(rp.IBUG68_FLIP) == list(range(68))
  np.testing.assert_array_equal(rp.IBUG68_FLIP[rp.IBUG68_FLIP], np.arange(68))
  # A yawed face is not its own mirror: the permutation is not the identity in disguise.
  yawed_pose = np.array([0.0, 0.5, 0.0, 0.6, 0.0, 0.0], np.float32)
  yawed = np.asarray(projection.to_pixels(projection.project(lm3d, yawed_pose), (64, 64)))
  assert np.abs(rp.flip_landmarks(yawed, 64) - yawed).max() > 1.0


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 2000), st.integers(0, 2 ** 31 - 1))
def test_flips_are_involutions(width, seed):
  rng = np.random.default_rng(seed)
  pts = rng.uniform(-5, width + 5, (68, 2))
  np.testing.assert_allclose(rp.flip_landmarks(rp.flip_landmarks(pts, width), width), pts,
                             atol=1e-9)
  box = np.sort(rng.uniform(0, width, 2))
  b4 = np.array([box[0], 3.0, box[1], 9.0])
  np.testing.assert_allclose(rp.flip_box(rp.flip_box(b4, width), width), b4, atol=1e-9)
  # A flipped box is the box of the flipped points.
  x0y0, x1y1 = rp.flip_points(b4.reshape(2, 2), width)
  np.testing.assert_allclose(rp.flip_box(b4, width), [x1y1[0], x0y0[1], x0y0[0], x1y1[1]])


def test_box_nme_is_the_mean_distance_over_the_boxes_sqrt_area():
  rng = np.random.default_rng(0)
  gt = rng.uniform(0, 100, (68, 2))
  pred = gt + rng.normal(0, 2, (68, 2))
  box = np.array([10.0, 20.0, 60.0, 100.0])
  want = sum(np.hypot(*(pred[i] - gt[i])) for i in range(68)) / 68 / np.sqrt(50.0 * 80.0)
  assert rp.box_nme(pred, gt, box) == pytest.approx(want, rel=1e-5)


def test_bad_annotations_are_named(tmp_path):
  p = tmp_path / "lm.json"
  p.write_text(json.dumps({"a.jpg": [{"landmarks_68": [[0, 0]] * 67}]}))
  with pytest.raises(ValueError, match=r"lm.json: a.jpg face 0: landmarks_68 must be 68"):
    rp.read_annotations(p)
  p.write_text("{not json")
  with pytest.raises(ValueError, match="lm.json: cannot read"):
    rp.read_annotations(p)
  lm = np.random.default_rng(1).uniform(5, 50, (68, 2))
  p.write_text(json.dumps({"a.jpg": [{"landmarks_68": lm.tolist(), "annotation": "dlib 68"}]}))
  ann = rp.read_annotations(p)["a.jpg"][0]
  np.testing.assert_allclose(ann["box"], [*lm.min(0), *lm.max(0)])   # the landmarks' box
  assert rp.source_of(ann["annotation"]) == "dlib" and rp.source_of("300-W, human") == "human"


def test_the_summary_groups_by_annotation_source():
  rows = [dict(source="human", nme=0.04, flip_nme=0.01, failure=False),
          dict(source="human", nme=0.08, flip_nme=0.03, failure=True),
          dict(source="dlib", nme=0.10, flip_nme=0.02, failure=False),
          dict(source="none", nme=None, flip_nme=0.06, failure=False)]
  s = rp.summarise(rows)
  assert s["human"] == {"faces": 2, "nme_mean": pytest.approx(6.0), "nme_median": pytest.approx(6.0)}
  assert s["dlib"]["faces"] == 1 and s["dlib"]["nme_mean"] == pytest.approx(10.0)
  assert s["annotated"]["faces"] == 3 and s["annotated"]["nme_median"] == pytest.approx(8.0)
  assert s["flip"]["faces"] == 4 and s["flip"]["flip_nme_mean"] == pytest.approx(3.0)
  assert s["flip"]["flagged"] == 1
  assert "| human | 2 | 6.00 | 6.00 |" in rp.summary_md(s, "# t")
