"""spectralnn.datasets."""
