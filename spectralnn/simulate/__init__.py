"""spectralnn.simulate."""
