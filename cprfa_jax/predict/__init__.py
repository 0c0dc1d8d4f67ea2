"""A trained pipeline on photos: `Predictor`, its command line and its exported artifact."""
