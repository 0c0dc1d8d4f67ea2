"""Studies beyond the paper's tables: the robustness of every method to DAFI corruption
(`corruptions`)."""
