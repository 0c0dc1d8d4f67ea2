"""Running a trained CPRFA pipeline on photos (`predictor.Predictor`), its command line
(`python -m cprfa_jax.predict`) and its exported artifact (`export`)."""
