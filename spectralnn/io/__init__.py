"""spectralnn.io."""
