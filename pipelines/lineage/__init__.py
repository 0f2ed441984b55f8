"""Lineage: read pipeline runs, variants and measurements back from ML Metadata (MLMD).

Everything here reads MLMD through its own client API (`get_lineage_subgraph`, events,
contexts); nothing is recorded beside it. The modules:

  * `store`: open a store read-only (a local sqlite file or a MySQL server) with clear
    errors for paths that are not MLMD stores and servers that cannot be reached;
  * `queries`: runs, a run's DAG, an artifact's upstream trace, two runs compared;
  * `render`: terminal text and JSON; `export`: DOT, Mermaid and self-contained HTML;
  * `commands`: `inference-optimizer lineage {runs,show,trace,diff,export}`.

Only `commands` is imported when the CLI builds its parser, and it imports the standard
library only; `ml_metadata` loads when a sub-command runs (about 1 s, no TensorFlow).
"""
