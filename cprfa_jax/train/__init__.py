"""Training: the shared loop, checkpoints, sharding, history, the stages and the pipeline."""
