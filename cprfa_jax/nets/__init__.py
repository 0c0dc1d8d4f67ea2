"""Flax modules of the pipeline (U-Net, landmark network, CPR regressor) and their builders."""
