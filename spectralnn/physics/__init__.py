"""spectralnn.physics."""
