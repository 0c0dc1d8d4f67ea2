"""The paper's figures drawn with OpenCV and NumPy: CED curves (Fig. 5, `ced`), fit grids
(Fig. 6, `fit_grid`) and CPR matrices (Fig. 3, `cpr_figure`), on the helpers of `draw`.

Every figure is returned as a uint8 RGB array (H, W, 3); callers write PNGs with
`cv2.imwrite(path, cv2.cvtColor(fig, cv2.COLOR_RGB2BGR))`, as `data.contact_sheet` does.
This module gathers the public names of the four, so callers need one import.
"""

from cprfa_jax.report.ced import PALETTE_RGB, ced_errors, ced_plot, method_colour, nice_step
from cprfa_jax.report.cpr_figure import (CHANNELS, FRAME_GREY, NAN_RGB, NEG_RGB, POS_RGB,
                                         colour_bar, cpr_channels, cpr_stages, diverging_rgb,
                                         robust_limit)
from cprfa_jax.report.draw import (BLACK, GREY, GRID, WHITE, ascii_text, blend, draw_dots,
                                   legend, put_text, put_vertical_text, scale_points,
                                   text_block, text_size, tile_columns, tile_rows,
                                   to_uint8_rgb, upscale, wrap_text)
from cprfa_jax.report.fit_grid import (GT_RGB, MESH_RGB, OUTLINE_ALPHA, PRED_RGB, SELECTED_RGB,
                                       SHADED_ALPHA, UNDETECTED_ALPHA, WIRE_ALPHA,
                                       boundary_edges, dafi_tile, fit_grid, landmark_tile,
                                       legend_strip, mesh_tile, triangles_facing)
