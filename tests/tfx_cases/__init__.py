"""Tests of the proof-case TFX pipelines (pipelines/examples)."""
