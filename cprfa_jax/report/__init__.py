"""Figures and images for reports (Fig. 3, 5, 6), drawn with OpenCV and NumPy; the PNG writer."""
