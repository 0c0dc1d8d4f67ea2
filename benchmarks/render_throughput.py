"""Throughput of the JAX renderer against the painter's-algorithm reference (OpenCV + NumPy).

Both produce, for each example of a batch of random faces (identity, expression, pose up to
90 degrees of yaw, albedo and light), the DAFI, the mask, the triangle ids and the shaded RGB.
The JAX time is the whole `render.render_batch` call including its host-side tile count, until
the outputs are ready as JAX arrays (on the CPU backend they are in host memory, where the
training step reads them; a further copy into NumPy arrays is not counted); compilation is
excluded (one warm-up call per resolution).
Prints one JSON object: examples/s of each at each resolution, their ratio, and how well the
two agree. Usage:

    python benchmarks/render_throughput.py [--batch 32] [--sizes 128 256] [--repeats 5]
"""

import argparse
import json
import os
import platform

import jax
import jax.numpy as jnp
import numpy as np

from _timing import median_time
from cprfa_jax import render
from cprfa_jax.mm import shape
from cprfa_jax.render import reference, shading


def _model(num_vertices):
  try:
    from cprfa_jax.mm.synthetic import synthetic_model
  except ImportError as e:  # the procedural model is the project's default; say what is missing
    raise SystemExit(f"benchmarks/render_throughput.py needs cprfa_jax.mm.synthetic ({e})")
  return synthetic_model(num_vertices=num_vertices)


def _batch(model, regions, b, seed):
  """Random shapes (B, V, 3), poses (B, 6), albedo (B, V, 3) and lights (fields (B, 3))."""
  rng = np.random.default_rng(seed)
  alpha_id = rng.normal(0, 1, (b, model.num_id)).astype(np.float32)
  alpha_exp = rng.normal(0, 0.7, (b, model.num_exp)).astype(np.float32)
  verts = jax.vmap(shape, in_axes=(None, 0, 0))(model, alpha_id, alpha_exp)
  deg = np.stack([rng.uniform(-30, 30, b), rng.uniform(-90, 90, b), rng.uniform(-30, 30, b)], -1)
  pose = np.concatenate([np.radians(deg), rng.uniform(0.9, 1.2, (b, 1)),
                         rng.uniform(-0.1, 0.1, (b, 2))], -1).astype(np.float32)
  keys = jax.random.split(jax.random.PRNGKey(seed), 2 * b)
  params = jax.vmap(shading.random_albedo_params, in_axes=(0, None))(keys[:b], model.num_vertices)
  albedo = jax.vmap(shading.vertex_albedo, in_axes=(None, 0))(regions, params)
  light = jax.vmap(shading.random_light)(keys[b:])
  return verts, jnp.asarray(pose), albedo, light


def _reference_batch(model, verts, pose, albedo, light, hw):
  """The reference pipeline, all on the host: NumPy projection and normals, OpenCV raster."""
  tri = np.asarray(model.triangles_Tx3)
  pncc = np.asarray(model.pncc_Vx3)
  out = []
  for i in range(verts.shape[0]):
    cam = reference.reference_camera_points(verts[i], pose[i])
    out.append(reference.reference_render(
        reference.reference_pixels(cam, hw), tri, pncc, hw, albedo_Vx3=albedo[i],
        normals_Vx3=reference.reference_normals(cam, tri),
        light=shading.Light(*(f[i] for f in light))))
  return out


def main():
  ap = argparse.ArgumentParser(description=__doc__)
  ap.add_argument("--batch", type=int, default=32)
  ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--ref-repeats", type=int, default=1, help="reference passes over the batch")
  ap.add_argument("--vertices", type=int, default=6000, help="synthetic model size")
  args = ap.parse_args()
  model = _model(args.vertices)
  regions = shading.model_regions(model)
  verts, pose, albedo, light = _batch(model, regions, args.batch, seed=0)
  verts_np, pose_np, albedo_np = np.asarray(verts), np.asarray(pose), np.asarray(albedo)
  light_np = shading.Light(*(np.asarray(f) for f in light))

  # Other work on the machine slows the two-threaded JAX run more than the one-threaded
  # reference: the load average says whether the ratio is trustworthy.
  result = {"benchmark": "render_throughput", "batch": args.batch,
            "vertices": model.num_vertices, "triangles": int(model.triangles_Tx3.shape[0]),
            "load_average_1min_before": round(os.getloadavg()[0], 2)}
  for size in args.sizes:
    hw = (size, size)
    run_jax = lambda: jax.block_until_ready(
        render.render_batch(model, verts, pose, hw, light, albedo))
    t_jax = median_time(run_jax, args.repeats)
    ref_out = []
    t_ref = median_time(lambda: ref_out.append(
        _reference_batch(model, verts_np, pose_np, albedo_np, light_np, hw)), args.ref_repeats)
    ours = run_jax()
    ref = ref_out[-1]
    mask_ref = np.stack([r[1] for r in ref])
    dafi_err = np.abs(np.asarray(ours.dafi) - np.stack([r[0] for r in ref])).max(-1)
    rgb_err = np.abs(np.asarray(ours.rgb) - np.stack([r[3] for r in ref])).max(-1)
    result[f"{size}px"] = {
        "jax_examples_per_s": round(args.batch / t_jax, 1),
        "reference_examples_per_s": round(args.batch / t_ref, 1),
        "jax_over_reference": round(t_ref / t_jax, 2),
        "num_tiles": render.tiles_for(model, verts, pose, hw),
        "mask_agreement": round(float((np.asarray(ours.mask) == mask_ref).mean()), 4),
        "dafi_agreement_0.02": round(float((dafi_err < 0.02).mean()), 4),
        "rgb_agreement_0.05": round(float((rgb_err < 0.05).mean()), 4),
    }
  result.update(jax=jax.__version__, backend=jax.default_backend(), cpus=os.cpu_count(),
                machine=platform.machine(), processor=platform.processor() or platform.machine())
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()
