"""Data sources, grain pipelines and device sharding."""
