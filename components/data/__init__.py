"""Streams on disk: generation, the parquet data contract, validation."""
