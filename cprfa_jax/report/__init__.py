"""Figures for reports: the paper's CED curves (Fig. 5), fit grids (Fig. 6) and CPR matrices
(Fig. 3), drawn with OpenCV and NumPy into uint8 RGB arrays."""
