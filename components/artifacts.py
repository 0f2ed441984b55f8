"""Artifact types emitted by this project's components.

`TYPE_NAME` is `components.<Class>`: Kubeflow requires the form
`^[a-z][a-z0-9-_]{2,20}[.][A-Z][a-zA-Z0-9-_]{2,49}$` and its container imports that
title as `module.Class`, so every class here is importable as `components.<Class>`.
None declares `PROPERTIES` (the Kubeflow compile fails with them); facts go into
custom properties instead. Every variant artifact carries at least:

  * `variant_name` (string): the row name in the benchmark table, e.g. `frozen_graph`;
  * `format` (string): how to load it; the Benchmarker picks its backend by this;
  * `status` (string): `ok`, or `failed` with `failure_reason` (a failed variant is
    still published so the table can show why; it is never blessed);
  * `size_bytes` (int).
"""

from __future__ import annotations

from tfx.types.artifact import Artifact


class FrozenGraph(Artifact):
    """A serving signature with its variables folded into constants.

    * File structure:
        - `{uri}/`
            - `graph.pb`: binary GraphDef, constants only. For a signature that takes
              serialized tf.Examples, this is the **model core**: dense tensors in (the
              outputs of the preprocessing part), the signature's outputs out.
            - `signature.json`: input/output names, graph tensor names, dtypes, shapes
              (of the core, after a split).
            - `source_signature.json`: the signature as the original model takes it
              (inputs marked `encoding: tf_example` take serialized Examples).
            - `preprocessing/`: only for serialized-Example signatures.
                - `graph.pb`: serialized tf.Example strings in -> the core's inputs out
                  (ParseExample, the Transform graph's lookups and scaling).
                - `signature.json`: its input (the serialized Examples) and outputs
                  (named as the core's inputs).
                - `tables.json`, `tables.npz`: the lookup tables it reads (a table is
                  a resource no GraphDef can hold; see components/common/preprocessing.py).

    * Custom properties: `variant_name`, `format=graphdef`, `status`, `size_bytes`,
      `node_count`, `op_histogram` (JSON), `signature_key`, `source_model_uri`,
      `source_model_form`, `source_model_path` (what was frozen, resolved),
      `source_inputs` (JSON); after a split also `preprocessing=1`, `core_inputs`,
      `preprocessing_node_count`, `lookup_tables`.
    """

    TYPE_NAME = "components.FrozenGraph"


class OptimizedGraph(Artifact):
    """A frozen graph after inference transforms, plus a servable SavedModel of it.

    * File structure:
        - `{uri}/`
            - `graph.pb`: the optimized GraphDef.
            - `signature.json`
            - `transform_log.json`: per transform, node counts and op histograms
              before/after and time spent.
            - `saved_model/`: SavedModel wrapping `graph.pb` with `serving_default`.

    * Custom properties: the variant properties, `transforms` (JSON list),
      `node_count_before`, `node_count_after`.
    """

    TYPE_NAME = "components.OptimizedGraph"


class QuantizedModel(Artifact):
    """One quantization mode's result: a TFLite flatbuffer or a quantized TF graph.

    * File structure:
        - `{uri}/`
            - `model.tflite` (modes float16, dynamic_range, int8), or
              `graph.pb` (modes weights_int8_graph, onednn_int8)
            - `signature.json`
            - `quantization.json`: mode, sizes, calibration count, op coverage,
              ops left in float, delegate partitions.

    * Custom properties: the variant properties, `mode`, `calibration_samples`,
      `float_ops` (JSON).
    """

    TYPE_NAME = "components.QuantizedModel"


class XlaCompiledModel(Artifact):
    """An XLA-compiled variant: a JIT SavedModel or ahead-of-time machine code.

    * File structure (`mode=jit`):
        - `{uri}/saved_model/`: serving function with `jit_compile=True`.
        - `{uri}/signature.json`
    * File structure (`mode=aot`):
        - `{uri}/model.o`, `model.h`: machine code and its C++ header.
        - `{uri}/libmodel.so`: a shared library with a C entry point.
        - `{uri}/hlo.txt`: HLO text of the compiled computation.
        - `{uri}/aot.json`, `{uri}/signature.json`

    * Custom properties: the variant properties, `mode`, `compile_seconds`,
      `target_cpu_features`, `batch_size` (aot).
    """

    TYPE_NAME = "components.XlaCompiledModel"


class ConvertedModel(Artifact):
    """A frozen graph converted for another runtime (OpenVINO IR, ONNX), one mode each.

    * File structure: the runtime's model files (`model.xml`/`model.bin` for OpenVINO,
      `model.onnx` for ONNX Runtime), `signature.json`, and a `<runtime>.json` with the
      conversion's facts (precision, calibration, quantized op counts).

    * Custom properties: the variant properties, `mode`, `calibration_samples`, and the
      mode's facts (e.g. `precision_hint`, `fake_quantize_ops`, `quantize_linear_ops`).
    """

    TYPE_NAME = "components.ConvertedModel"


class BenchmarkReport(Artifact):
    """Latency, throughput, accuracy, size and faithfulness of every variant.

    * File structure:
        - `{uri}/`
            - `report.json`: versioned schema (see components/benchmarker).
            - `report.md`
            - `report.html`: self-contained, no external assets.

    * Custom properties: `schema_version`, `winner`, `blessed`, `baseline_p50_ms`,
      and per variant `<variant>.p50_ms`, `<variant>.top1`, `<variant>.speedup_p50`;
      the machine as `hardware_*` and `version_*` (components/benchmarker/report_schema.md).
    """

    TYPE_NAME = "components.BenchmarkReport"


class VariantBlessing(Artifact):
    """The Benchmarker's verdict: which variant to push, or why none.

    * File structure:
        - `{uri}/`
            - `BLESSED` or `NOT_BLESSED`: empty marker files, as TFX's ModelBlessing.
            - `blessing.json`: winner, its artifact URI and format, the objective,
              the accuracy budget and the reason.

    * Custom properties: `blessed` (int 0/1, like ModelBlessing), `winner`,
      `winner_uri`, `winner_format`, `reason`.
    """

    TYPE_NAME = "components.VariantBlessing"


ALL_ARTIFACT_TYPES = (
    FrozenGraph,
    OptimizedGraph,
    QuantizedModel,
    XlaCompiledModel,
    ConvertedModel,
    BenchmarkReport,
    VariantBlessing,
)
