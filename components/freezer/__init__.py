"""Freezer: SavedModel (or TFX `Model`) in, frozen GraphDef plus signature out."""
