"""Data: example schema, synthetic and real data sets, augmentation."""
