"""spectralnn.models."""
