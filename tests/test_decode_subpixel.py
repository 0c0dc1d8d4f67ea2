"""Sub-pixel DAFI decoding (issue 12, `decode.subpixel`): exact on affine PNCC fields, equal to a
naive per-vertex least-squares reference, more accurate and more complete than the paper's
pixel-mean decoding on a rendered face, and safe where the local fit is singular."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cprfa_jax import geometry as geo
from cprfa_jax import render
from cprfa_jax.data import sampler
from cprfa_jax.decode import pixel as dafi
from cprfa_jax.decode.subpixel import decode_dafi_subpixel
from cprfa_jax.mm import synthetic_model

HW = (24, 24)


def affine_field(j_3x2, c0_3):
  """A DAFI whose code at pixel (x, y) is c0 + J [x, y]: the local model is exact."""
  ys, xs = np.mgrid[:HW[0], :HW[1]].astype(np.float64)
  return c0_3 + xs[..., None] * j_3x2[:, 0] + ys[..., None] * j_3x2[:, 1]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), radius=st.sampled_from([1, 2]))
def test_affine_field_decodes_exactly(seed, radius):
  rng = np.random.default_rng(seed)
  # Columns of J of 0.01-0.03 per pixel: PNCC changes about that much per pixel at 64 px.
  j = rng.uniform(0.01, 0.03, (3, 2)) * rng.choice([-1, 1], (3, 2))
  j[:, 1] += 0.5 * j[:, 0] * rng.uniform(-1, 1)             # not orthogonal, full rank
  c0 = np.array([0.5, 0.5, 0.5]) - j @ np.array([HW[1] / 2, HW[0] / 2])
  field = affine_field(j, c0)
  # Vertex codes at sub-pixel positions well inside the image, plus off-plane codes.
  xy = rng.uniform(radius + 1, HW[0] - radius - 2, (30, 2))
  codes = c0 + xy @ j.T
  normal = np.cross(j[:, 0], j[:, 1])
  off = codes[:10] + 0.05 * normal / np.linalg.norm(normal)  # 0.05 off the plane: no match
  pncc = np.concatenate([codes, off])
  pos, det = decode_dafi_subpixel(field, np.ones(HW, bool), pncc, radius=radius)
  assert det[:30].all() and not det[30:].any()
  # float32 output of positions < 24: a few ulps.
  np.testing.assert_allclose(pos[:30], xy, atol=1e-4)


def _naive_solve(field, mask, x0, y0, c, radius):
  a, b = [], []
  for dy in range(-radius, radius + 1):
    for dx in range(-radius, radius + 1):
      x, y = x0 + dx, y0 + dy
      if 0 <= x < mask.shape[1] and 0 <= y < mask.shape[0] and mask[y, x]:
        a.append([1.0, dx, dy])
        b.append(field[y, x])
  a, b = np.array(a), np.array(b)
  if len(a) < 3 or np.linalg.matrix_rank(a) < 3:
    return None
  coef = np.linalg.lstsq(a, b, rcond=None)[0]
  c0, jac = coef[0], coef[1:].T
  delta = np.linalg.lstsq(jac, c - c0, rcond=None)[0]
  return delta, np.linalg.norm(c0 + jac @ delta - c)


def naive_subpixel(field, mask, codes, max_dist, radius):
  """Per vertex: nearest face pixel by brute force, np.linalg.lstsq of the neighbourhood's
  codes on [1, dx, dy] and of the offset, once more around the pixel that points to."""
  rows, cols = np.nonzero(mask)
  h, w = mask.shape
  pos, det = np.zeros((len(codes), 2)), np.zeros(len(codes), bool)
  for v, c in enumerate(codes):
    k = np.argmin(np.linalg.norm(field[rows, cols] - c, axis=-1))
    x0, y0 = cols[k], rows[k]
    first = _naive_solve(field, mask, x0, y0, c, radius)
    if first is None:
      continue
    x1, y1 = (int(np.clip(np.rint(x0 + first[0][0]), 0, w - 1)),
              int(np.clip(np.rint(y0 + first[0][1]), 0, h - 1)))
    second = _naive_solve(field, mask, x1, y1, c, radius) if mask[y1, x1] else None
    if second is not None:
      (delta, resid), x0, y0 = second, x1, y1
    else:
      delta, resid = first
    if resid < max_dist and np.abs(delta).max() <= radius + 0.5:
      pos[v], det[v] = (x0 + delta[0], y0 + delta[1]), True
  return pos, det


def rendered_face(hw=(64, 64)):
  m = synthetic_model(num_vertices=3000, num_id=10, num_exp=5)
  verts = np.asarray(m.mean_Vx3)
  pose = np.asarray(sampler.frame_pose(verts[np.asarray(m.landmarks_68)], [15.0, 35.0, 5.0], 2.0))
  out = render.render(m, verts, pose, hw)
  truth = np.asarray(geo.to_pixels(geo.project(verts, pose), hw))
  return np.asarray(out.dafi, np.float64), np.asarray(out.mask, bool), np.asarray(m.pncc_Vx3), truth


@pytest.mark.parametrize("noise,radius", [(0.0, 1), (0.01, 2)])
def test_equals_naive_reference_on_a_rendered_face(noise, radius):
  field, mask, pncc, _ = rendered_face((40, 40))
  field = field + mask[..., None] * np.random.default_rng(3).normal(0, noise, field.shape)
  subset = np.arange(0, len(pncc), 7)
  pos, det = decode_dafi_subpixel(field, mask, pncc, subset, 0.02, radius)
  ref_pos, ref_det = naive_subpixel(field, mask, pncc[subset], 0.02, radius)
  assert det.sum() > 50
  # Ties in the nearest pixel or a residual at the threshold could flip a flag; none expected
  # here beyond a handful.
  assert (det != ref_det).sum() <= 2
  both = det & ref_det
  np.testing.assert_allclose(pos[both], ref_pos[both], atol=1e-3)


def test_beats_pixel_mean_decoding_on_a_true_dafi():
  field, mask, pncc, truth = rendered_face()
  sub_pos, sub_det = decode_dafi_subpixel(field, mask, pncc)
  pix_pos, pix_det = dafi.decode_dafi_kdtree(field, mask, dafi.build_pncc_tree(pncc),
                                             np.arange(len(pncc)))
  err = lambda p, d: np.linalg.norm(p[d] - truth[d], axis=-1)
  # More vertices found and each placed closer: the pixel mean is quantised to pixel centres.
  assert sub_det.sum() > 1.5 * pix_det.sum()
  assert np.median(err(sub_pos, sub_det)) < 0.5 * np.median(err(pix_pos, pix_det))
  assert np.percentile(err(sub_pos, sub_det), 95) < 1.0


def test_singular_neighbourhoods_leave_vertices_undetected():
  field = affine_field(np.array([[0.02, 0.0], [0.0, 0.02], [0.01, 0.01]]), np.zeros(3) + 0.2)
  codes = field[[5, 6, 12], [7, 8, 9]]
  # One row of face pixels: every neighbourhood is collinear, the 3 x 3 normal matrix singular.
  row = np.zeros(HW, bool)
  row[6, :] = True
  # A constant field: J = 0, the offset solve is singular.
  flat = np.full(HW + (3,), 0.4)
  for f, m, c in ((field, row, codes), (flat, np.ones(HW, bool), np.full((2, 3), 0.4)),
                  (field, np.zeros(HW, bool), codes)):
    with np.errstate(all="raise"):
      pos, det = decode_dafi_subpixel(f, m, c)
    assert not det.any() and np.all(pos == 0)


def test_bad_input_is_refused():
  with pytest.raises(ValueError, match="radius"):
    decode_dafi_subpixel(np.zeros(HW + (3,)), np.ones(HW, bool), np.zeros((2, 3)), radius=0)
  with pytest.raises(ValueError, match="mask"):
    decode_dafi_subpixel(np.zeros(HW + (3,)), np.ones((3, 3), bool), np.zeros((2, 3)))


def test_observations_decode_with_the_configured_decoder():
  from cprfa_jax import observe
  field, mask, pncc, _ = rendered_face((40, 40))
  tree = dafi.build_pncc_tree(pncc)
  batch = np.stack([field, field[:, ::-1]]).astype(np.float32), np.stack([mask, mask[:, ::-1]])
  obs = observe.host_observations(*batch, None, tree, 0.02, (40, 40), decode="subpixel")
  for i in range(2):
    pos, det = decode_dafi_subpixel(batch[0][i], batch[1][i], pncc, None, 0.02)
    np.testing.assert_array_equal(obs["det_all"][i], det)
    np.testing.assert_allclose(obs["y_all"][i][det], geo.from_pixels(pos[det], (40, 40)),
                               atol=1e-6)
  pixel = observe.host_observations(*batch, None, tree, 0.02, (40, 40))
  assert pixel["det_all"].sum() < obs["det_all"].sum()
  with pytest.raises(ValueError, match="cpr.decode='bilinear'"):
    observe.host_observations(*batch, None, tree, 0.02, (40, 40), decode="bilinear")


# --- the device version (`decode.subpixel_device`) against the host one --------------------------

def test_device_decoder_equals_the_host_decoder_on_rendered_faces():
  import jax

  from cprfa_jax.decode.subpixel_device import decode_all_subpixel
  field, mask, pncc, _ = rendered_face()
  noisy = field + mask[..., None] * np.random.default_rng(4).normal(0, 0.01, field.shape)
  images = np.stack([field, noisy]).astype(np.float32)
  masks = np.stack([mask, mask])
  pos, det = jax.vmap(decode_all_subpixel, in_axes=(0, 0, None, None))(images, masks, pncc, 0.03)
  for i in range(2):
    ref_pos, ref_det = decode_dafi_subpixel(images[i], masks[i], pncc, None, 0.03)
    # float32 distances on the device, float64 in the KD-tree: a near-tie may pick another
    # nearest pixel, and a residual at the threshold may flip; a handful of vertices at most.
    assert ref_det.sum() > 1000
    assert (np.asarray(det[i]) != ref_det).sum() <= 5
    both = np.asarray(det[i]) & ref_det
    close = np.abs(np.asarray(pos[i])[both] - ref_pos[both]).max(-1) < 1e-3
    assert close.mean() > 0.999


def test_device_decoder_is_exact_on_affine_fields_and_safe_where_singular():
  from cprfa_jax.decode.subpixel_device import decode_all_subpixel
  rng = np.random.default_rng(7)
  j = np.array([[0.025, 0.004], [-0.003, 0.02], [0.012, -0.015]])
  c0 = np.array([0.5, 0.5, 0.5]) - j @ np.array([HW[1] / 2, HW[0] / 2])
  xy = rng.uniform(2, HW[0] - 3, (30, 2))
  pos, det = decode_all_subpixel(affine_field(j, c0).astype(np.float32), np.ones(HW, bool),
                                 (c0 + xy @ j.T).astype(np.float32), 0.01, chunk=7)
  assert np.asarray(det).all()
  np.testing.assert_allclose(np.asarray(pos), xy, atol=2e-3)   # float32 fits of codes ~0.5
  row = np.zeros(HW, bool)
  row[6] = True
  for m in (row, np.zeros(HW, bool)):
    pos, det = decode_all_subpixel(affine_field(j, c0).astype(np.float32), m,
                                   (c0 + xy @ j.T).astype(np.float32))
    assert not np.asarray(det).any() and np.all(np.isfinite(np.asarray(pos)))
