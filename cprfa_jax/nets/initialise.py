"""Making a network's first parameters: jitted, and on the CPU compiled at a cheaper level.

A Flax `init` makes hundreds of small random-number kernels (one initialiser per leaf: a
regressor of configs/smoke.py has 224) and runs the forward pass around them. XLA's CPU backend
compiles at LLVM optimisation level 3 by default, and spends most of a regressor init's ~31 s
compile there; at level 2 the same programs compiled in 1.2-8.7 s and gave the same parameters
bit for bit, for every stage of configs/smoke.py and configs/quickstart.py (benchmarks/
RESULTS.md). An init runs once, so its code's speed does not matter; its compile is paid at the
start of every stage. Train and inference steps keep XLA's default: there level 2 saved only
~20% of the compile and moved losses in the 7th digit, away from the published numbers. Other
backends compile as they default (the level was measured on the CPU only).
"""

from __future__ import annotations

import jax

CPU_COMPILER_OPTIONS = {"xla_backend_optimization_level": 2}


def compiler_options(platform: str) -> dict:
  """The XLA options an init is compiled with on `platform` ("cpu", "gpu", "tpu")."""
  return dict(CPU_COMPILER_OPTIONS) if platform == "cpu" else {}


def init_jitted(init_fn, *args, **jit_kwargs):
  """`jax.jit(init_fn, **jit_kwargs)(*args)`, compiled with `compiler_options` of the default
  backend (where jit places it). `jit_kwargs`: e.g. `out_shardings`. Each call lowers and
  compiles (no in-memory cache: an init runs once per stage; the persistent compilation cache,
  where enabled, still serves a repeat)."""
  lowered = jax.jit(init_fn, **jit_kwargs).lower(*args)
  compiled = lowered.compile(compiler_options=compiler_options(jax.default_backend()))
  return compiled(*args)
