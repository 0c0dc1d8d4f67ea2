"""Evaluation: Table 1 (DAFI detection), Table 2 (every fitting method), stage status."""
