"""Training infrastructure shared by every stage."""
