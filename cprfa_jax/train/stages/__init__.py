"""The trainers of the pipeline's stages: U-Net, landmark network, CPR regressors."""
