"""The package's layers (cprfa_jax/__init__.py): imports run one way, and the predictor loads no
training stack. Both read the real source and the real interpreter, so a new sideways import or
a top-level `import orbax` in a module the predictor reaches fails here."""

import ast
import pathlib
import subprocess
import sys


ROOT = pathlib.Path(__file__).resolve().parents[1]
PKG = ROOT / "cprfa_jax"

# Top-level unit -> layer (cprfa_jax/__init__.py's order, finer): a module may import its own
# unit and units of a strictly lower layer only.
LAYERS = {
    "numerics": 0, "batching": 0,
    "geometry": 1, "mm": 1, "cpr": 1, "decode": 1,       # the math of §2
    "metrics": 2, "render": 2,
    "report": 3,                                        # figures drawn from arrays
    "nets": 4,                                          # Flax modules and their builders
    "data": 5, "baselines": 5, "cli": 5, "workdirs": 5,
    "observe": 6,                                       # images -> observations
    "train": 7, "evaluate": 7, "predict": 7, "demo": 7,
    "studies": 8,
}
# The lazy (function-level) imports a lower layer may make of a higher one, and why.
LAZY = {("workdirs", "cprfa_jax.train.checkpoint"):
        "restoring parameters: orbax loads only when a checkpoint is read, not on import"}
# Training-only libraries the predictor must not load (the list) and what pulls them in.
TRAINING_STACK = ("orbax", "grain", "tensorflow_datasets", "tensorflow", "optax")


def _unit(module: str) -> str | None:
  parts = module.split(".")
  return parts[1] if parts[0] == "cprfa_jax" and len(parts) > 1 else None


def _imports(path: pathlib.Path):
  """(line, imported module, lazy) of every import in a file; lazy: inside a function."""
  tree = ast.parse(path.read_text())
  top = {id(n) for n in tree.body}
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      names = [f"{node.module}.{a.name}" for a in node.names]   # a submodule or a name
      for n in names:
        yield node.lineno, n, id(node) not in top
    elif isinstance(node, ast.Import):
      for a in node.names:
        yield node.lineno, a.name, id(node) not in top


def _violations():
  out = []
  for path in sorted(PKG.rglob("*.py")):
    rel = path.relative_to(ROOT).with_suffix("")
    own = _unit(".".join(rel.parts))
    if own == "__init__":    # cprfa_jax/__init__.py: the package's re-exports of layer 0
      continue
    for line, mod, lazy in _imports(path):
      other = _unit(mod)
      if other is None or other == own or (lazy and (own, mod) in LAZY):
        continue
      if LAYERS[other] >= LAYERS[own]:
        out.append(f"{path.relative_to(ROOT)}:{line} ({own}, layer {LAYERS[own]}) imports {mod} "
                   f"(layer {LAYERS[other]})")
  return out


def test_every_unit_has_a_layer():
  units = {p.stem if p.is_file() else p.name for p in PKG.iterdir()
           if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))
           and p.name != "__init__.py"}
  assert units == set(LAYERS), f"units without a layer: {units - set(LAYERS)}"


def test_imports_run_one_way():
  assert _violations() == []


def test_the_checker_sees_a_sideways_import(tmp_path, monkeypatch):
  # The scan would report a predictor importing the trainer: a file with that import is flagged.
  bad = PKG / "predict" / "_layer_probe.py"
  bad.write_text("from cprfa_jax.train import loop\n")
  try:
    assert any("_layer_probe.py:1 (predict, layer 7) imports cprfa_jax.train" in v
               for v in _violations())
  finally:
    bad.unlink()


PREDICT = ("cprfa_jax.predict", "cprfa_jax.predict.predictor", "cprfa_jax.predict.cli",
           "cprfa_jax.predict.export")


def test_predictor_imports_no_training_stack():
  code = (f"import sys, {', '.join(PREDICT)}\n"
          f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {TRAINING_STACK!r}\n"
          "             or m.startswith(('cprfa_jax.train', 'cprfa_jax.evaluate',\n"
          "                              'cprfa_jax.baselines', 'cprfa_jax.studies',\n"
          "                              'cprfa_jax.data.tfds_io', 'cprfa_jax.data.streams')))\n"
          "print(','.join(bad))\n")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       check=True)
  assert out.stdout.strip() == "", f"the predictor's modules load {out.stdout.strip()}"


def test_the_training_entry_point_does_load_them():
  # The same probe on train.py's stack finds orbax and optax: the check above can fail.
  code = "import sys, cprfa_jax.train.pipeline; print('orbax' in sys.modules, 'optax' in sys.modules)"
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       check=True)
  assert out.stdout.split() == ["True", "True"]


def test_every_folder_says_its_role_in_one_line():
  for init in sorted(PKG.rglob("__init__.py")):
    doc = ast.get_docstring(ast.parse(init.read_text()))
    assert doc and len(doc.splitlines()) == 1, f"{init.relative_to(ROOT)}: {doc!r}"


def test_no_local_name_shadows_an_imported_module():
  # A function that rebinds the name of a module the file imports (a list called `crops` in a
  # file that imports `data.crops`) breaks every later use of the module in that function.
  found = []
  for path in sorted(PKG.rglob("*.py")):
    tree = ast.parse(path.read_text())
    imported = {a.asname or a.name for node in tree.body if isinstance(node, ast.ImportFrom)
                and node.module and node.module.startswith("cprfa_jax") for a in node.names}
    for node in ast.walk(tree):
      name = (node.id if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)
              else node.arg if isinstance(node, ast.arg) else None)
      if name in imported:
        found.append(f"{path.relative_to(ROOT)}:{node.lineno} rebinds {name}")
  assert found == []


def test_importing_every_module_claims_no_flags():
  # Scripts claim their absl flags (--config, --workdir, ...) in define_flags(), called only
  # under __main__: two modules that claimed --config on import could not be imported in one
  # process (one pytest worker collecting two test files), with absl's DuplicateFlagError.
  modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts) for p in PKG.rglob("*.py")
                   if p.name not in ("__init__.py", "__main__.py"))
  code = ("import importlib\nfrom absl import flags\n"
          f"for m in {modules!r}:\n  importlib.import_module(m)\n"
          "print(','.join(sorted(f'{m}:{f.name}' for m, fs in flags.FLAGS.flags_by_module_dict()"
          ".items() if m.startswith('cprfa_jax') for f in fs)))\n")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr.strip().splitlines()[-1:]
  assert out.stdout.strip() == "", f"flags claimed on import: {out.stdout.strip()}"
