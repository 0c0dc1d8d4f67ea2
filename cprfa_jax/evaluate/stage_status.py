"""Which trained stages evaluate.py scores, and whether each finished its training.

Each stage's checkpoint is read with the stage's own slice of the config
(`workdirs.stage_config`), and its step compared with the steps the config asks of that stage:
`train.num_steps` for the U-Net, `lmnet.train.num_steps` for the landmark network,
`cpr.train.num_steps` for the regressors. A stage short of them is refused, unless the user
allows it; then every table row that rests on it says so, in the markdown and in the JSON.
"""

from __future__ import annotations

from cprfa_jax import workdirs
from cprfa_jax.report import markdown


class UnfinishedStageError(ValueError):
  """A stage's checkpoint is short of its configured steps (and --allow_unfinished is off)."""


def steps_flag(stage: str) -> str:
  """The flag that sets a stage's number of steps."""
  return workdirs.stage_flag(stage, "train.num_steps")


def status(config, stage: str, step: int, root: str | None = None) -> dict:
  """{step, num_steps, num_steps_flag, unfinished, rewinds, config_changes} of a stage's
  evaluated checkpoint; the last two from the stage's history.jsonl (`train.history`): every
  rewind past a non-finite step, and every resume that changed a schedule key."""
  num = int(workdirs.stage_config(config, stage).train.num_steps)
  rows = workdirs.history_rows(workdirs.stage_dir(root, stage)) if root else []
  return {"step": int(step), "num_steps": num, "num_steps_flag": steps_flag(stage),
          "unfinished": int(step) < num,
          "rewinds": [{k: r[k] for k in ("step", "restored_step", "skipped_batch") if k in r}
                      for r in rows if r["event"] == "rewind"],
          "config_changes": [{"step": r["step"], "changed": r["changed"]}
                             for r in rows if r["event"] == "resume" and r.get("changed")]}


def check_finished(statuses: dict, allow: bool) -> None:
  """Raises UnfinishedStageError naming the first unfinished stage, unless `allow`."""
  short = [s for s, st in statuses.items() if st["unfinished"]]
  if not short or allow:
    return
  st = statuses[short[0]]
  also = f" (also unfinished: {', '.join(short[1:])})" if len(short) > 1 else ""
  raise UnfinishedStageError(
      f"stage {short[0]} is unfinished: its checkpoint is at step {st['step']} of the "
      f"{st['num_steps']} configured ({st['num_steps_flag']}){also}; train on, or pass "
      "--allow_unfinished to score it anyway (its rows are then marked unfinished)")


def mark(stages, statuses: dict) -> tuple[str, dict]:
  """(label suffix, JSON fields) for a row resting on `stages`: ("", {"unfinished": False})
  when all finished, else e.g. (" [unfinished: capu step 1 of 400]", {"unfinished": True, "unfinished_stages":
  {"capu": {"step": 1, "num_steps": 400}}})."""
  short = {s: statuses[s] for s in stages if s in statuses and statuses[s]["unfinished"]}
  if not short:
    return "", {"unfinished": False}
  text = "; ".join(f"{s} step {st['step']} of {st['num_steps']}" for s, st in short.items())
  return f" [unfinished: {text}]", {
      "unfinished": True,
      "unfinished_stages": {s: {"step": st["step"], "num_steps": st["num_steps"]}
                            for s, st in short.items()}}


def table_md(statuses: dict) -> str:
  """report.md's table of the evaluated checkpoints."""
  cells = []
  for s, st in statuses.items():
    rewinds = ", ".join(f"batch {r['skipped_batch']} at step {r['step']}"
                        for r in st.get("rewinds", [])) or "none"
    changes = "; ".join(f"step {c['step']}: " + ", ".join(f"{k} {a} → {b}" for k, (a, b) in
                                                       sorted(c["changed"].items()))
                        for c in st.get("config_changes", [])) or "none"
    cells.append([s, str(st["step"]), f"{st['num_steps']} (`{st['num_steps_flag']}`)",
                  "**unfinished**" if st["unfinished"] else "finished", rewinds, changes])
  return markdown.table(["Stage", "Checkpoint step", "Configured steps", "", "Rewinds",
                         "Resumed with changes"], cells) + "\n"
