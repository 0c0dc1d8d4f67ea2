"""Published numbers of the methods this project does not run, as the CPRFA paper reports them.

Table 2 of the paper (NME %, |yaw| bins [0, 30], (30, 60], (60, 90], mean of the bin means,
std): AFLW (21 points, 3DDFA's protocol) and AFLW2000-3D (68 points). The paper's own CPRFA row
is listed too, to compare with ours. 3DDA+SDM (the ablation's baseline, Fig. 5a) and PAWF
(§3.5) have no number in the paper, and COFW (Fig. 5b) is reported only as CED curves: they are
listed without numbers, so the report says what is missing instead of leaving it out.
Table 1's FAN-3D row (the landmark network's counterpart) is kept for AFLW2000-3D.
"""

from __future__ import annotations

from cprfa_jax.report import markdown

NOTE = "published, not run"
_T2 = "the paper's Table 2"
# protocol -> {method: (bins, mean, std, source)}; bins None where the paper gives none.
TABLE2 = {
    "aflw21": {
        "3DDFA": ([5.00, 5.06, 6.74], 5.60, 0.99, _T2),
        "3DSTN": ([3.55, 3.92, 5.21], 4.23, 0.87, _T2),
        "LDFC": ([5.94, 6.48, 7.96], 6.79, 0.85, _T2),
        "PAWF": (None, None, None, "§3.5 names it a baseline; no number in the paper"),
        "CPRFA (paper)": ([3.71, 4.20, 5.52], 4.47, 0.76, _T2),
    },
    "aflw2000": {
        "3DDFA": ([3.78, 4.54, 7.93], 5.42, 2.21, _T2),
        "3DSTN": ([3.15, 4.33, 5.98], 4.49, 1.42, _T2),
        "LDFC": ([3.62, 6.06, 9.56], 6.41, 2.44, _T2),
        "3DDA+SDM": (None, None, None, "§3.4's baseline; Fig. 5a (CED) only"),
        "PAWF": (None, None, None, "§3.5 names it a baseline; no number in the paper"),
        "CPRFA (paper)": ([3.12, 3.62, 5.40], 4.05, 1.20, _T2),
    },
    "cofw68": {
        "3DDFA": (None, None, None, "Fig. 5b (CED) only"),
        "3DDA+SDM": (None, None, None, "Fig. 5b (CED) only"),
        "CPRFA (paper)": (None, None, None, "Fig. 5b (CED) only"),
    },
}
# The paper's Table 1 (AFLW2000-3D): FAN-3D's 68 landmarks, NME % / ADR %.
TABLE1_FAN3D = {"nme_bins": [2.67, 3.76, 5.24], "nme_mean": 3.89, "nme_std": 1.05,
                "adr_bins": [100.0, 100.0, 100.0], "adr_mean": 100.0, "adr_std": 0.0,
                "failure": 1.25, "source": "the paper's Table 1"}


def protocol_of(metadata) -> str | None:
  """Which published table a set compares with: "aflw21", "cofw68", "aflw2000" or None (the
  synthetic sets, which no paper scores)."""
  metadata = metadata or {}
  if metadata.get("protocol") in ("aflw21", "cofw68"):
    return metadata["protocol"]
  return "aflw2000" if metadata.get("source") == "aflw2000" else None


def rows(protocol) -> dict:
  """{method: report row} for a protocol (empty for None), each marked "published, not run"."""
  return {m: {"nme_bins": bins or [None] * 3, "nme_mean": mean, "nme_std": std,
              "status": NOTE, "source": src}
          for m, (bins, mean, std, src) in TABLE2.get(protocol, {}).items()}


def table_md(protocol) -> str:
  """Markdown of `rows(protocol)`, or "" when there is nothing to list."""
  r = rows(protocol)
  if not r:
    return ""
  cell = lambda v: "–" if v is None else f"{v:.2f}"
  lines = [f"Published, not run (NME %, {'21' if protocol == 'aflw21' else '68' if protocol == 'aflw2000' else '51'} points):",
           "", markdown.table(
               ["Method", "[0°, 30°]", "(30°, 60°]", "(60°, 90°]", "Mean", "Std", "Source"],
               [[f"{m} ({NOTE})"] + [cell(v) for v in row["nme_bins"]]
                + [cell(row["nme_mean"]), cell(row["nme_std"]), row["source"]]
                for m, row in r.items()])]
  return "\n".join(lines) + "\n"
