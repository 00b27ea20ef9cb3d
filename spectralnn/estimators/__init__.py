"""spectralnn.estimators."""
