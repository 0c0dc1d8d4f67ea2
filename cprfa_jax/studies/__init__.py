"""Studies beyond the paper's tables: robustness to DAFI corruption, the occlusion margin."""
