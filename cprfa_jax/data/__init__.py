"""Data: example schema, synthetic and real data sets, crops, augmentation, DAFI corruptions."""
