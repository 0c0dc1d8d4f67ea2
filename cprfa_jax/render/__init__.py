"""Z-buffer renderer: DAFI, face mask and shaded RGB of a morphable-model mesh under a pose."""
from cprfa_jax.render.raster import (
                                     Raster,
                                     bucket,
                                     count_tiles,
                                     rasterize,
                                     rasterize_batch,
                                     tiles_needed,
                                     visible_vertices,
)
from cprfa_jax.render.renderer import (
                                     Rendering,
                                     Surround,
                                     default_albedo,
                                     render,
                                     render_batch,
                                     render_batch_fixed,
                                     render_fixed,
                                     tiles_for,
)
from cprfa_jax.render.shading import (
                                     AlbedoParams,
                                     FaceRegions,
                                     HeadLook,
                                     Light,
                                     default_albedo_params,
                                     default_light,
                                     default_head_look,
                                     face_regions,
                                     head_albedo,
                                     lambert,
                                     model_regions,
                                     random_albedo_params,
                                     random_head_look,
                                     random_light,
                                     vertex_albedo,
)
