"""Kubeflow Pipelines: compile the shared pipeline to a KFP v2 package, submit and schedule it.

- `config`: the compile settings, from flags or a team's YAML file (unknown keys refused).
- `platform_spec`: node selectors, tolerations and resource quantities (no TFX imports).
- `compiler`: `create_pipeline(...)` -> KubeflowV2DagRunner -> PipelineSpec + PlatformSpec YAML.
- `client`: `kfp.Client` runs and recurring runs, with API errors turned into clear messages.
- `commands`: the `compile`, `submit` and `schedule` sub-commands.

Only `compiler` imports TFX, and only when it compiles.
"""
