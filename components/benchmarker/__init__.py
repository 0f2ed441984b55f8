"""Benchmarker: latency, throughput, accuracy and faithfulness of every variant."""
