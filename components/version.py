"""The package version; it is part of every component's cache key (see pipelines/pipeline.py)."""

__version__ = "0.2.0"
