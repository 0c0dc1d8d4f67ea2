"""Tests for cprfa_jax.report.figures: shapes, and that the pixels say what the data says."""
import numpy as np
import pytest

from cprfa_jax.report import figures


def near(pixels_Kx3, rgb, tol=40) -> np.ndarray:
  """Which pixels are within `tol` (per channel) of the colour rgb."""
  diff = np.abs(np.asarray(pixels_Kx3, np.int32) - np.array(rgb, np.int32))
  return np.all(diff <= tol, axis=-1)


# --- ced_plot --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(640, 480), (400, 300)])
def test_ced_plot_shape(size):
  img = figures.ced_plot({"a": np.linspace(0, 0.2, 50), "b": np.full(7, 0.03)}, "t", size=size)
  assert img.dtype == np.uint8 and img.shape == (size[1], size[0], 3)


def curve_pixels(img, rows, cols, colour=figures.PALETTE_RGB[0]) -> int:
  h, w, _ = img.shape
  region = img[int(rows[0] * h):int(rows[1] * h), int(cols[0] * w):int(cols[1] * w)]
  return int(near(region, colour).sum())


def test_ced_curve_follows_the_data():
  top_left, bottom_left = ((0, 0.25), (0, 0.35)), ((0.6, 0.9), (0, 0.35))
  perfect = figures.ced_plot({"m": np.zeros(20)}, "t")
  # Every image at NME 0: the CED is 1 from the first threshold, a line along the top.
  assert curve_pixels(perfect, *top_left) > 50
  assert curve_pixels(perfect, *bottom_left) == 0
  late = figures.ced_plot({"m": np.full(20, 0.095)}, "t")
  # Every image at 9.5%: the CED stays at 0 until the right end.
  assert curve_pixels(late, *top_left) == 0
  assert curve_pixels(late, *bottom_left) > 50


def test_ced_swapping_data_changes_image():
  good, bad = np.full(30, 0.01), np.full(30, 0.08)
  a = figures.ced_plot({"x": good, "y": bad}, "t")
  assert np.array_equal(a, figures.ced_plot({"x": good, "y": bad}, "t"))
  assert not np.array_equal(a, figures.ced_plot({"x": bad, "y": good}, "t"))


def test_ced_nan_is_a_failure():
  nan = figures.ced_plot({"m": np.full(10, np.nan)}, "t")
  assert np.array_equal(nan, figures.ced_plot({"m": np.full(10, np.inf)}, "t"))
  assert not np.array_equal(nan, figures.ced_plot({"m": np.zeros(10)}, "t"))


def test_ced_rejects_no_methods():
  with pytest.raises(ValueError):
    figures.ced_plot({}, "t")


# --- fit_grid --------------------------------------------------------------------------------

H = W = 16
S = 3
TILE = H * S


def grid_inputs(n=2, mesh_cols=2, front=True):
  images = np.full((n, H, W, 3), 128, np.uint8)
  dafis = np.full((n, H, W, 3), 0.5, np.float32)
  dafis[:, 4, 6] = (1.0, 0.0, 0.0)                   # row 4, column 6
  mesh = np.zeros((n, 3, mesh_cols))
  mesh[:, :, :2] = [(2, 2), (13, 2), (2, 13)]
  triangles = np.array([[0, 1, 2]])
  pred = np.tile(np.array([5.0, 10.0]), (n, 68, 1))  # x = 5, y = 10
  gt = np.tile(np.array([12.0, 3.0]), (n, 68, 1))
  sel = np.array([[10.0, 12.0], [3.0, 3.0]])[None].repeat(n, 0)
  detected = np.array([[True, False]]).repeat(n, 0)
  return {"images_NxHxWx3": images, "dafis_NxHxWx3": dafis, "mesh_px_NxVx2": mesh,
          "triangles_Tx3": triangles, "front_facing_NxT": np.full((n, 1), front),
          "landmarks_pred_Nx68x2": pred, "landmarks_gt_Nx68x2": gt,
          "selected_px_NxCx2": sel, "selected_detected_NxC": detected}


def tile_at(grid, row, col, pad=2):
  """Tile (row, col) of a grid drawn without titles or row labels."""
  y, x = row * (TILE + pad), col * (TILE + pad)
  return grid[y:y + TILE, x:x + TILE]


def at(tile, x, y):
  """The tile pixel at the scaled position of the original pixel coordinates (x, y)."""
  return tile[y * S + 1, x * S + 1]


def test_fit_grid_shape():
  grid = figures.fit_grid(**grid_inputs(n=2), scale=S)
  assert grid.dtype == np.uint8 and grid.shape == (3 * TILE + 2 * 2, 2 * TILE + 2, 3)
  framed = figures.fit_grid(**grid_inputs(n=2), scale=S, titles=["a", "NME 3.2%"],
                            row_labels=("T", "M", "B"))
  assert framed.dtype == np.uint8 and framed.shape[0] > grid.shape[0]
  assert framed.shape[1] > grid.shape[1]


@pytest.mark.parametrize("col", [0, 1])
def test_fit_grid_landmark_colours(col):
  grid = figures.fit_grid(**grid_inputs(n=2), scale=S)
  m = tile_at(grid, 1, col)
  assert near(at(m, 5, 10), figures.PRED_RGB, 60)
  assert near(at(m, 12, 3), figures.GT_RGB, 60)
  assert near(at(m, 10, 12), figures.SELECTED_RGB, 60)
  # Nothing at the transposed positions, and the undetected vertex is dimmer than a detected one.
  assert np.array_equal(at(m, 10, 5), [128, 128, 128])
  assert np.array_equal(at(m, 3, 12), [128, 128, 128])
  assert not near(at(m, 3, 3), figures.SELECTED_RGB, 60)


def test_fit_grid_dafi_row_is_nearest_upscaled():
  t = tile_at(figures.fit_grid(**grid_inputs(n=1), scale=S), 0, 0)
  assert np.array_equal(np.unique(t[4 * S:5 * S, 6 * S:7 * S].reshape(-1, 3), axis=0),
                        [[255, 0, 0]])
  assert np.array_equal(t[6 * S, 4 * S], [128, 128, 128])


def test_fit_grid_mesh_row():
  b = tile_at(figures.fit_grid(**grid_inputs(n=1), scale=S), 2, 0)
  edge = b[2 * S + 1, 8 * S]                         # on the edge (2, 2) - (13, 2)
  assert near(edge, figures.MESH_RGB, 40)
  assert np.array_equal(b[5 * S, 5 * S], [128, 128, 128])  # inside: a lone triangle has no edges
  hidden = tile_at(figures.fit_grid(**grid_inputs(n=1, front=False), scale=S), 2, 0)
  assert np.all(hidden == 128)


def test_fit_grid_shaded_mesh_fills_triangles():
  b = tile_at(figures.fit_grid(**grid_inputs(n=1, mesh_cols=3), scale=S), 2, 0)
  inside = b[5 * S, 5 * S].astype(float)
  # Facing the camera: full brightness, blended over grey 128.
  expected = 128 + figures.SHADED_ALPHA * (np.array(figures.MESH_RGB) - 128)
  np.testing.assert_allclose(inside, expected, atol=2)
  assert np.array_equal(b[14 * S, 14 * S], [128, 128, 128])


def test_fit_grid_checks_lengths():
  bad = grid_inputs(n=2)
  bad["landmarks_gt_Nx68x2"] = bad["landmarks_gt_Nx68x2"][:1]
  with pytest.raises(ValueError, match="landmarks_gt"):
    figures.fit_grid(**bad)
  vertex_flags = grid_inputs(n=2)
  vertex_flags["front_facing_NxT"] = np.ones((2, 3), bool)
  with pytest.raises(ValueError, match="triangles_facing"):
    figures.fit_grid(**vertex_flags)


def test_triangles_facing():
  tri = np.array([[0, 1, 2], [1, 2, 3]])
  np.testing.assert_array_equal(figures.triangles_facing([True, True, True, False], tri),
                                [True, False])


def test_boundary_edges_leave_out_shared_ones():
  quad = np.array([[0, 1, 2], [2, 1, 3]])            # two triangles sharing the edge 1-2
  edges = {tuple(e) for e in figures.boundary_edges(quad)}
  assert edges == {(0, 1), (0, 2), (1, 3), (2, 3)}


# --- cpr_channels ----------------------------------------------------------------------------

CELL = 32
PAD = 4


def channel_tile(img, c):
  """Tile c of a one-panel figure without headers: tiles are right-aligned, framed (+2)."""
  w = img.shape[1]
  x = w - (3 - c) * (CELL + 2) - (2 - c) * PAD
  return img[1:1 + CELL, x + 1:x + 1 + CELL]


def test_cpr_channels_colours():
  a = np.zeros((4, 4, 3))
  a[..., 1] = 0.5
  a[..., 2] = -0.5
  a[0, 1, 0] = 0.5                                   # entry (row 0, column 1) of channel 1
  img = figures.cpr_channels([("Λ_rxy^G − Λ_rxy^O", a)], cell=CELL, channel_names=None, pad=PAD)
  assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[0] == CELL + 2
  zero, pos, neg = (channel_tile(img, c) for c in range(3))
  assert np.array_equal(zero[CELL - 1, CELL - 1], [255, 255, 255])
  assert np.array_equal(zero[2, CELL // 4 + 2], figures.POS_RGB)
  assert np.array_equal(zero[CELL // 4 + 2, 2], [255, 255, 255])
  r, g, b = pos[CELL // 2, CELL // 2].astype(int)
  assert r > 150 and b < 100 and g < 100
  r, g, b = neg[CELL // 2, CELL // 2].astype(int)
  assert b > 150 and r < 100


def test_cpr_channels_rows_and_all_zero():
  panels = [("zero", np.zeros((5, 5, 3))), ("big", np.full((8, 8, 3), 1e3))]
  img = figures.cpr_channels(panels, cell=CELL, pad=PAD)
  assert img.dtype == np.uint8 and img.shape[0] > 2 * (CELL + 2)
  one = figures.cpr_channels(panels[:1], cell=CELL, channel_names=None, pad=PAD)
  assert all(np.all(channel_tile(one, c) == 255) for c in range(3))


def test_cpr_channels_rejects_channel_first():
  with pytest.raises(ValueError, match="moveaxis"):
    figures.cpr_channels([("x", np.zeros((3, 8, 8)))])


def test_robust_limit_ignores_outliers_and_zeros():
  v = np.concatenate([np.full(1000, 0.1), [100.0], np.zeros(5000)])
  assert figures.robust_limit(v) == pytest.approx(0.1)
  assert figures.robust_limit(np.zeros(4)) == 1.0


def test_diverging_rgb():
  out = figures.diverging_rgb(np.array([0.0, 2.0, -2.0, 1.0, np.nan]), 2.0)
  np.testing.assert_array_equal(out[:3], [[255, 255, 255], figures.POS_RGB, figures.NEG_RGB])
  assert 255 > out[3, 1] > figures.POS_RGB[1] and out[3, 0] > out[3, 2]
  np.testing.assert_array_equal(out[4], figures.NAN_RGB)


# --- helpers ---------------------------------------------------------------------------------


def test_tile_rows_pads_with_white():
  a = np.zeros((3, 5, 3), np.uint8)
  b = np.full((2, 8, 3), 7, np.uint8)
  out = figures.tile_rows([a, b], pad=4)
  assert out.shape == (3 + 4 + 2, 8, 3) and out.dtype == np.uint8
  assert np.all(out[:3, :5] == 0) and np.all(out[:3, 5:] == 255)
  assert np.all(out[3:7] == 255) and np.all(out[7:] == 7)
  centred = figures.tile_rows([a, b], pad=0, align="centre")
  assert np.all(centred[:3, 1:6] == 0) and np.all(centred[:3, [0, 6, 7]] == 255)


def test_tile_columns_pads_with_white():
  a = np.zeros((3, 5, 3), np.uint8)
  b = np.full((6, 2, 3), 7, np.uint8)
  out = figures.tile_columns([a, b], pad=1)
  assert out.shape == (6, 5 + 1 + 2, 3)
  assert np.all(out[:3, :5] == 0) and np.all(out[3:, :5] == 255)
  assert np.all(out[:, 5] == 255) and np.all(out[:, 6:] == 7)


def test_ascii_text():
  assert figures.ascii_text("Λ_rxy^G − Λ_rxy^O, α") == "Lam_rxy^G - Lam_rxy^O, alpha"
  assert figures.ascii_text("日") == "?"


# --- legends, colour bars, every CPR input --------------------------------------------------


def test_ced_legend_is_under_the_axes():
  methods = {f"method {i}": np.full(20, 0.02 * i) for i in range(7)}
  img = figures.ced_plot(methods, "t")
  h, w, _ = img.shape
  # Every curve colour has its legend sample in the bottom strip ...
  for i in range(7):
    assert near(img[int(0.8 * h):].reshape(-1, 3), figures.method_colour(i), 10).sum() > 10, i
  # ... and nothing but curves, grid, ticks and text inside the axes: with every curve at
  # NME 0 (a line along the top), the lower right of the axes, where the legend used to sit,
  # is white and grid grey only.
  flat = figures.ced_plot({k: np.zeros(20) for k in methods}, "t")
  inside = flat[int(0.45 * h):int(0.6 * h), int(0.55 * w):int(0.95 * w)].reshape(-1, 3)
  assert np.all(near(inside, figures.WHITE, 2) | near(inside, figures.GRID, 2))


def test_legend_reads_down_columns_within_the_width():
  entries = [(f"entry {i}", figures.method_colour(i), "line", 2) for i in range(5)]
  strip = figures.legend(entries, 200, 0.42)
  assert strip.shape[1] <= 200 and strip.dtype == np.uint8
  assert strip.shape[0] > 2 * figures.legend(entries[:1], 200, 0.42).shape[0]

  def centre(i):
    ys, xs = np.nonzero(near(strip, figures.method_colour(i), 10))
    return xs.mean(), ys.mean()

  # Entry 1 sits under entry 0, in the same column.
  (x0, y0), (x1, y1) = centre(0), centre(1)
  assert abs(x1 - x0) < 2 and y1 > y0
  with pytest.raises(ValueError, match="marker"):
    figures.legend([("x", (0, 0, 0), "star", None)], 300, 0.42)


def test_fit_grid_legend_names_every_colour():
  plain = figures.fit_grid(**grid_inputs(n=2), scale=S)
  with_key = figures.fit_grid(**grid_inputs(n=2), scale=S, legend="CPRFA on synth-aflw")
  assert with_key.shape[1] >= plain.shape[1] and with_key.shape[0] > plain.shape[0]
  np.testing.assert_array_equal(with_key[:plain.shape[0], :plain.shape[1]], plain)
  many = figures.fit_grid(**grid_inputs(n=8), scale=S, legend="CPRFA on synth-aflw")
  assert many.shape[1] == figures.fit_grid(**grid_inputs(n=8), scale=S).shape[1]
  strip = with_key[plain.shape[0]:].reshape(-1, 3)
  for rgb in (figures.PRED_RGB, figures.GT_RGB, figures.SELECTED_RGB, figures.MESH_RGB):
    assert near(strip, rgb, 30).sum() > 3, rgb


def cpr_rows(scale_2=0.5, inputs=("a", "b", "c")):
  full = lambda v: np.full((8, 8, 3), v)
  return [("round 1, q = 1", {k: full(1.0) for k in inputs}),
          ("round 1, q = 2", {k: full(scale_2) for k in inputs})]


def test_cpr_stages_share_one_range_per_input():
  img = figures.cpr_stages(cpr_rows(), cell=CELL, pad=PAD)
  pixels = img.reshape(-1, 3)
  tile = CELL * CELL
  # q = 1 saturates (1.0 is the shared limit); q = 2 reads half as strong instead of saturating
  # again, as it would with a range per row.
  half = figures.diverging_rgb(np.array(0.5), 1.0)
  assert near(pixels, figures.POS_RGB, 0).sum() >= 9 * tile
  assert near(pixels, half, 0).sum() >= 9 * tile
  # The colour bars run from blue to red although every value is positive.
  assert near(pixels, figures.NEG_RGB, 8).sum() > 3 * 10


def test_cpr_stages_layout_and_checks():
  img = figures.cpr_stages(cpr_rows(), "title", cell=CELL, pad=PAD)
  assert img.dtype == np.uint8 and img.ndim == 3
  assert img.shape[0] > 2 * (CELL + 2) and img.shape[1] > 9 * (CELL + 2)
  # An input a row lacks is left blank; the figure keeps its shape.
  rows = cpr_rows()
  del rows[1][1]["c"]
  assert figures.cpr_stages(rows, "title", cell=CELL, pad=PAD).shape == img.shape
  zero = figures.cpr_stages(cpr_rows(0.0, ("a",)) + [("z", {"a": np.zeros((8, 8, 3))})])
  assert zero.dtype == np.uint8
  with pytest.raises(ValueError, match="moveaxis"):
    figures.cpr_stages([("r", {"a": np.zeros((3, 8, 8))})])
  with pytest.raises(ValueError, match="at least one"):
    figures.cpr_stages([])


def test_colour_bar_runs_blue_white_red():
  bar = figures.colour_bar(2.0, 120, 0.4)
  row = bar[bar.shape[0] // 4]
  assert near(row[2], figures.NEG_RGB, 10) and near(row[-3], figures.POS_RGB, 10)
  assert near(row[60], figures.WHITE, 10)
