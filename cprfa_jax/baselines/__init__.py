"""Baselines of §3.4: PnP and online optimisation on the DAFI."""
