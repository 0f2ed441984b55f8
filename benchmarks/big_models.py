"""Big models end to end: the whole pipeline's peak memory and wall time, per component.

    .venv/bin/python -m benchmarks.big_models --model resnet152
    make benchmark-big MODEL=bert_base

For one model, this:

1. Builds it in a process of its own (its training is not the pipeline's memory):
   - `resnet50`, `resnet152`, `efficientnet_b4`: `keras.applications.<arch>(weights=None)`,
     briefly trained on template images, as benchmarks/keras_applications.py does;
   - `bert_base`: a BERT-base-sized encoder from keras layers (12 layers, hidden 768,
     12 heads, FFN 3072, vocabulary 30522, sequence 128), fed int64 `input_ids` and
     `attention_mask`, with a binary (sigmoid) head (`build_bert`).
2. Runs `inference-optimizer run --memory-budget <the model's bound>` with every default
   kind this machine can run (XLA included: a kind that cannot take the model, or
   needs more than the budget, must be a failed row, not a dead run)
   under `/usr/bin/time -v`, while sampling the proportional set size (PSS) of the run's
   whole process tree every 5 s (and its RSS sum, an upper bound, every second). PSS
   splits the pages that forked children share with their server, so the tree's sum is
   the memory the run really holds.
3. Prints, and writes to `<output>/big_model.json` and `big_model.txt`:
   - the whole run's peak (the sampled tree PSS) against the issue's bound, and the largest single
     process's max RSS as `/usr/bin/time -v` reports it;
   - per component: its wall time and the memory its artifacts recorded
     (`pipeline_process_peak_rss_growth_bytes`, `child_process_peak_rss_bytes`, the
     Benchmarker's `benchmark_process_peak_rss_bytes`);
   - per variant: its status (failed rows with their reasons), p50 at batch 1 and its
     speedup, and its agreement with the baseline.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import threading
import time
from typing import Any

from components.common.memory_watch import tree_pss_bytes, tree_rss_bytes

GiB = 1 << 30
_REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RSS_SAMPLE_S = 1.0
PSS_SAMPLE_S = 5.0

# BERT-base's shape (Devlin et al. 2018), sequence 128.
BERT_VOCABULARY = 30522
BERT_SEQUENCE = 128
BERT_HIDDEN = 768
BERT_LAYERS = 12
BERT_HEADS = 12
BERT_FFN = 3072
# The binary task: whether the first token is one of the first half of these "class"
# tokens. The first token's own embedding reaches the pooled output through every
# layer's residual path, so a head fitted on it separates the classes with a margin that
# int8 noise has to overcome, like a trained classifier's.
BERT_CLASS_TOKENS = tuple(range(1000, 1010))
# The head's median |logit| (probability 0.82 or 0.18); see fit_bert_head.
BERT_MEDIAN_LOGIT = 1.5


@dataclasses.dataclass(frozen=True)
class BigModel:
    bound_bytes: int  # The bound on the whole pipeline's peak.
    image_arch: str | None = None  # A benchmarks.keras_applications architecture.
    train_epochs: int = 4
    train_batch_size: int = 16


MODELS = {
    "resnet50": BigModel(6 * GiB, "resnet50"),
    # Batch 8: training ResNet152 at batch 16 grew the builder past 23 GiB and the kernel
    # killed it (the Intel AMX machine of 2026-12-02); it is not the pipeline's memory.
    "resnet152": BigModel(10 * GiB, "resnet152", train_batch_size=8),
    "efficientnet_b4": BigModel(10 * GiB, "efficientnet_b4", train_batch_size=8),
    "bert_base": BigModel(10 * GiB),
}


# ---------------------------------------------------------------------- the BERT model


def build_bert(seed: int) -> Any:
    """The encoder, random from `seed`: embeddings, 12 post-LN transformer layers, a pooler
    and a one-unit sigmoid head; inputs `input_ids` and `attention_mask`, int64 [None, 128]."""
    import keras
    from keras import layers, ops

    keras.utils.set_random_seed(seed)

    class PositionAndMask(layers.Layer):
        """Adds learned position embeddings; turns the mask into MHA's [B, T, S] form."""

        def build(self, input_shape: Any) -> None:
            self.positions = self.add_weight(
                shape=(BERT_SEQUENCE, BERT_HIDDEN), initializer="random_normal", name="positions"
            )

        def call(self, embedded: Any, mask: Any) -> tuple[Any, Any]:
            keep = ops.cast(mask, "bool")[:, None, :]
            return embedded + self.positions, ops.repeat(keep, BERT_SEQUENCE, axis=1)

    ids = keras.Input((BERT_SEQUENCE,), dtype="int64", name="input_ids")
    mask = keras.Input((BERT_SEQUENCE,), dtype="int64", name="attention_mask")
    x = layers.Embedding(BERT_VOCABULARY, BERT_HIDDEN, name="token_embedding")(ids)
    x, attention_mask = PositionAndMask(name="positions")(x, mask)
    x = layers.LayerNormalization(epsilon=1e-12, name="embedding_norm")(x)
    for i in range(BERT_LAYERS):
        attended = layers.MultiHeadAttention(
            BERT_HEADS, BERT_HIDDEN // BERT_HEADS, name=f"layer_{i}_attention"
        )(x, x, attention_mask=attention_mask)
        x = layers.LayerNormalization(epsilon=1e-12, name=f"layer_{i}_attention_norm")(x + attended)
        hidden = layers.Dense(BERT_FFN, activation="gelu", name=f"layer_{i}_ffn_in")(x)
        x = layers.LayerNormalization(epsilon=1e-12, name=f"layer_{i}_ffn_norm")(
            x + layers.Dense(BERT_HIDDEN, name=f"layer_{i}_ffn_out")(hidden)
        )
    pooled = layers.Dense(BERT_HIDDEN, activation="tanh", name="pooler")(x[:, 0])
    probability = layers.Dense(1, activation="sigmoid", name="probability")(pooled)
    return keras.Model({"input_ids": ids, "attention_mask": mask}, probability, name="bert_base")


def bert_examples(count: int, rng: Any) -> dict[str, Any]:
    """Token sequences of random lengths (padded with 0 and masked), a class token first."""
    import numpy as np

    first = rng.choice(BERT_CLASS_TOKENS, size=count)
    ids = rng.integers(2000, BERT_VOCABULARY, size=(count, BERT_SEQUENCE))
    lengths = rng.integers(BERT_SEQUENCE // 4, BERT_SEQUENCE + 1, size=count)
    mask = (np.arange(BERT_SEQUENCE)[None, :] < lengths[:, None]).astype(np.int64)
    ids = np.where(mask == 1, ids, 0)
    ids[:, 0] = first
    half = BERT_CLASS_TOKENS[len(BERT_CLASS_TOKENS) // 2]
    return {
        "input_ids": ids.astype(np.int64),
        "attention_mask": mask,
        "label": (first < half).astype(np.int64),
    }


def fit_bert_head(model: Any, train: dict[str, Any]) -> None:
    """Fits the pooler and head on the frozen encoder's features for the train split.

    Training the whole encoder from scratch on 2 cores is hours; the features are
    computed once and only the last two layers learn.
    """
    import keras
    import numpy as np

    encoder = keras.Model(model.inputs, model.get_layer("pooler").input)
    features = encoder.predict(
        {k: train[k] for k in ("input_ids", "attention_mask")}, batch_size=16, verbose=0
    )
    head = keras.Sequential([model.get_layer("pooler"), model.get_layer("probability")])
    head.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    head.fit(features, train["label"], batch_size=32, epochs=60, verbose=0)
    # A fitted head saturates (outputs 0 or 1 to within 1e-4), and a saturated sigmoid
    # hides any error upstream of it: every variant would "agree". Scaling the last
    # layer keeps every decision and sets the median |logit| to that of a confident but
    # unsaturated classifier, so an encoder's int8 error shows in the probability.
    pooled = model.get_layer("pooler")(features)
    probability = model.get_layer("probability")
    kernel, bias = probability.get_weights()
    logits = np.asarray(pooled) @ kernel + bias
    scale = BERT_MEDIAN_LOGIT / float(np.median(np.abs(logits)))
    probability.set_weights([kernel * scale, bias * scale])


def build_bert_inputs(directory: str, num_examples: int, seed: int) -> tuple[str, str, dict]:
    import numpy as np

    from components.common.examples_io import write_examples

    model_uri = os.path.join(directory, "model")
    examples_uri = os.path.join(directory, "examples")
    rng = np.random.default_rng(seed)
    model = build_bert(seed)
    splits = {split: bert_examples(num_examples, rng) for split in ("train", "eval")}
    fit_bert_head(model, splits["train"])
    model.export(os.path.join(model_uri, "Format-Serving"), format="tf_saved_model", verbose=False)
    spread = {}
    for split, columns in splits.items():
        write_examples(examples_uri, columns, split=split)
        probability = model.predict(
            {k: columns[k] for k in ("input_ids", "attention_mask")}, batch_size=16, verbose=0
        )[:, 0]
        spread[split] = {
            "examples": int(len(probability)),
            "positive_fraction": float((probability > 0.5).mean()),
            "accuracy": float(((probability > 0.5) == (columns["label"] == 1)).mean()),
            "probability_std": float(probability.std()),
            # How far from the 0.5 threshold the outputs sit: what int8 noise must cross.
            "median_margin": float(np.median(np.abs(probability - 0.5))),
        }
    facts = {"model": "bert_base", "parameters": int(model.count_params()), "spread": spread}
    return model_uri, examples_uri, facts


# ------------------------------------------------------------------------ the inputs


def build_inputs(name: str, directory: str, num_examples: int) -> dict[str, Any]:
    """Builds the model and its examples under `directory`, unless they are already there."""
    facts_path = os.path.join(directory, "inputs.json")
    if os.path.exists(facts_path):
        with open(facts_path, encoding="utf-8") as f:
            return json.load(f)
    spec = MODELS[name]
    if spec.image_arch:
        from benchmarks import keras_applications

        model_uri, examples_uri, facts = keras_applications.build_inputs(
            spec.image_arch, directory, num_examples, spec.train_epochs, spec.train_batch_size
        )
    else:
        from benchmarks.keras_applications import SEED

        model_uri, examples_uri, facts = build_bert_inputs(directory, num_examples, SEED)
    from components.common.sizes import directory_size_bytes

    facts.update(
        model_uri=model_uri,
        examples_uri=examples_uri,
        saved_model_bytes=directory_size_bytes(model_uri),
    )
    with open(facts_path, "w", encoding="utf-8") as f:
        json.dump(facts, f, indent=2)
    return facts


# ------------------------------------------------------------------ the memory sampler

# The process-tree readers live in components/common/memory_watch.py (the Benchmarker
# counts what the run holds outside its harness with them too).


class TreeSampler:
    """Samples a process tree's memory until stopped; keeps the peaks and when they were.

    RSS every `RSS_SAMPLE_S`, PSS every `PSS_SAMPLE_S`: reading smaps_rollup walks the
    page tables of every process, and at 2 Hz over a 13 GB tree it took 40% of a core,
    enough for the Benchmarker's contention check to set aside every timing window.
    """

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak_bytes = 0
        self.peak_at_s = 0.0
        self.peak_processes = 0
        self.peak_rss_sum_bytes = 0
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last_pss = -PSS_SAMPLE_S
        while not self._stop.wait(RSS_SAMPLE_S):
            now = time.monotonic() - self._start
            self.peak_rss_sum_bytes = max(self.peak_rss_sum_bytes, tree_rss_bytes(self.root))
            if now - last_pss < PSS_SAMPLE_S:
                continue
            last_pss = now
            total, processes = tree_pss_bytes(self.root)
            if total > self.peak_bytes:
                self.peak_bytes, self.peak_processes, self.peak_at_s = total, processes, now

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def parse_time_v(stderr: str) -> dict[str, Any]:
    """`/usr/bin/time -v`'s maximum RSS (the largest single process) and wall time."""
    facts: dict[str, Any] = {}
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    if match:
        facts["max_rss_bytes"] = int(match.group(1)) * 1024
    match = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", stderr)
    if match:
        seconds = 0.0
        for part in match.group(1).split(":"):
            seconds = seconds * 60 + float(part)
        facts["wall_s"] = seconds
    return facts


# --------------------------------------------------------------------------- the run


def run_pipeline(facts: dict, output: str, pipeline_name: str, run_args: list[str]) -> dict:
    command = [
        "/usr/bin/time",
        "-v",
        sys.executable,
        "-m",
        "pipelines",
        "run",
        "--model",
        facts["model_uri"],
        "--examples",
        facts["examples_uri"],
        "--output",
        output,
        "--pipeline-name",
        pipeline_name,
        *run_args,
    ]
    print("+ " + " ".join(command), file=sys.stderr, flush=True)
    stderr_path = os.path.join(output, "run.stderr.txt")
    os.makedirs(output, exist_ok=True)
    with open(stderr_path, "w", encoding="utf-8") as stderr:
        process = subprocess.Popen(command, cwd=_REPOSITORY, stderr=subprocess.PIPE, text=True)
        sampler = TreeSampler(process.pid)
        for line in process.stderr:  # Shown live, and kept for the time -v summary.
            sys.stderr.write(line)
            stderr.write(line)
        code = process.wait()
        sampler.stop()
    with open(stderr_path, encoding="utf-8") as f:
        measured = parse_time_v(f.read())
    return {
        "exit_code": code,
        "tree_peak_pss_bytes": sampler.peak_bytes,
        "tree_peak_at_s": round(sampler.peak_at_s, 1),
        "tree_peak_processes": sampler.peak_processes,
        "tree_peak_rss_sum_bytes": sampler.peak_rss_sum_bytes,
        **measured,
    }


def component_table(output: str, pipeline_name: str) -> tuple[list[dict], dict]:
    """Per component: wall time and the memory its artifacts recorded; and the report."""
    from components.benchmarker.report import read_report
    from pipelines.lineage import queries
    from pipelines.lineage.store import SqliteLocation, open_store
    from pipelines.local_runner import metadata_path

    store = open_store(SqliteLocation(metadata_path(output)))
    run = queries.resolve_run(store, "latest", pipeline_name)
    graph = queries.run_graph(store, run).graph
    outputs: dict[int, list[int]] = {}
    for edge in graph.edges:
        if edge.kind == "output":
            outputs.setdefault(edge.execution_id, []).append(edge.artifact_id)
    rows = []
    for execution in sorted(graph.executions.values(), key=lambda e: e.started):
        row = {"component": execution.node_id, "state": execution.state}
        row["wall_s"] = round(execution.duration_s, 1)
        for artifact_id in outputs.get(execution.id, []):
            properties = graph.artifacts[artifact_id].properties
            for key in ("pipeline_process_peak_rss_growth_bytes", "child_process_peak_rss_bytes"):
                if properties.get(key):
                    row[key] = max(row.get(key, 0), int(properties[key]))
        rows.append(row)
    report_node = queries.report_artifact(graph)
    report = read_report(report_node.uri) if report_node else {}
    if report:
        benchmarker = next((r for r in rows if r["component"] == "Benchmarker"), None)
        peak = report.get("inputs", {}).get("benchmark_process_peak_rss_bytes")
        if benchmarker is not None and peak:
            benchmarker["child_process_peak_rss_bytes"] = int(peak)
    return rows, report


def variant_rows(report: dict) -> list[dict]:
    if not report:
        return []
    baseline = report["baseline_name"]
    rows = [r for r in report["variants"] if r.get("covers") != "harness"]
    by_name = {r["name"]: r for r in rows}
    base = (by_name.get(baseline, {}).get("latency") or {}).get("summary", {}).get("p50_ms")
    table = []
    for row in rows:
        p50 = ((row.get("latency") or {}).get("summary") or {}).get("p50_ms")
        table.append(
            {
                "variant": row["name"],
                "status": row["status"],
                "p50_ms": p50,
                "speedup": base / p50 if base and p50 else None,
                "agreement": row.get("agreement"),
                "blessed": row["name"] == report["selection"].get("winner"),
                "reason": row.get("failure_reason"),
            }
        )
    return table


def _size(value: int | None) -> str:
    from components.common.sizes import format_bytes

    return format_bytes(value) if value else "-"


def render(name: str, facts: dict, measured: dict, components: list[dict], variants: list[dict]):
    spec = MODELS[name]
    peak = measured["tree_peak_pss_bytes"]
    lines = [
        f"{name}: SavedModel {_size(facts['saved_model_bytes'])}; exit code "
        f"{measured['exit_code']}; wall {measured.get('wall_s', 0):.0f} s",
        f"whole run's peak (PSS of its process tree, sampled every {PSS_SAMPLE_S:.0f} s): "
        f"{_size(peak)} at {measured['tree_peak_at_s']:.0f} s over "
        f"{measured['tree_peak_processes']} processes; bound {_size(spec.bound_bytes)}: "
        + ("MET" if peak and peak <= spec.bound_bytes else "NOT MET"),
        f"its RSS summed over processes (every {RSS_SAMPLE_S:.0f} s; counts pages forked "
        f"children share once each): {_size(measured.get('tree_peak_rss_sum_bytes'))}",
        "largest single process (/usr/bin/time -v max RSS): "
        + _size(measured.get("max_rss_bytes")),
        "",
        f"{'component':28} {'state':9} {'wall s':>7} {'pipeline growth':>15} {'child peak':>11}",
    ]
    for row in components:
        lines.append(
            f"{row['component']:28} {row['state']:9} {row['wall_s']:7.1f} "
            f"{_size(row.get('pipeline_process_peak_rss_growth_bytes')):>15} "
            f"{_size(row.get('child_process_peak_rss_bytes')):>11}"
        )
    lines += ["", f"{'variant':26} {'status':8} {'p50 ms @1':>10} {'speedup':>8} {'agree':>6}"]
    for row in variants:
        p50 = f"{row['p50_ms']:10.2f}" if row["p50_ms"] else "-".rjust(10)
        speedup = f"{row['speedup']:7.2f}x" if row["speedup"] else "-".rjust(8)
        agreement = f"{row['agreement']:6.3f}" if row["agreement"] is not None else "-".rjust(6)
        note = "blessed" if row["blessed"] else (row["reason"] or "")[:110]
        lines.append(f"{row['variant']:26} {row['status']:8} {p50} {speedup} {agreement}  {note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), required=True)
    parser.add_argument("--output", default=None, help="default: runs/big-<model>")
    parser.add_argument("--num-examples", type=int, default=128, help="per split")
    parser.add_argument("--time-budget", type=float, default=20.0, help="per timing scenario")
    parser.add_argument(
        "--memory-budget",
        default=None,
        help="the run's --memory-budget (default: the model's bound, e.g. 10Gi; 'none': unset)",
    )
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("run_args", nargs="*", help="extra `run` arguments, after --")
    args = parser.parse_args(argv)
    output = os.path.abspath(args.output or os.path.join("runs", f"big-{args.model}"))
    inputs = os.path.join(output, "inputs")
    if args.build_only:
        build_inputs(args.model, inputs, args.num_examples)
        return 0
    # The model is built and trained in a process of its own, so that its memory is not
    # counted against the pipeline's.
    subprocess.run(
        [sys.executable, "-m", "benchmarks.big_models", "--model", args.model, "--output", output]
        + ["--num-examples", str(args.num_examples), "--build-only"],
        cwd=_REPOSITORY,
        check=True,
    )
    with open(os.path.join(inputs, "inputs.json"), encoding="utf-8") as f:
        facts = json.load(f)
    print(f"Inputs: {json.dumps(facts['spread']['eval'])}", file=sys.stderr)
    pipeline_name = f"big-{args.model.replace('_', '-')}"
    # The bound is what the run is told it may take: a transform that would need more
    # is a failed variant that says so (components/common/memory_cap.py).
    budget = args.memory_budget or f"{MODELS[args.model].bound_bytes / GiB:g}Gi"
    budget_args = [] if budget == "none" else ["--memory-budget", budget]
    run_args = ["--time-budget", str(args.time_budget), *budget_args, *args.run_args]
    measured = run_pipeline(facts, output, pipeline_name, run_args)
    components, report = component_table(output, pipeline_name)
    variants = variant_rows(report)
    table = render(args.model, facts, measured, components, variants)
    fingerprint = report.get("fingerprint", {})
    machine = (
        f"Machine: {fingerprint.get('cpu_model')} (flags: "
        f"{' '.join(fingerprint.get('cpu_flags') or []) or 'none'}), "
        f"{fingerprint.get('usable_cores')} usable cores"
    )
    print(f"\n{machine}\n{table}")
    with open(os.path.join(output, "big_model.txt"), "w", encoding="utf-8") as f:
        f.write(f"{machine}\n{table}\n")
    with open(os.path.join(output, "big_model.json"), "w", encoding="utf-8") as f:
        json.dump(
            {
                "model": args.model,
                "bound_bytes": MODELS[args.model].bound_bytes,
                "inputs": facts,
                "measured": measured,
                "components": components,
                "variants": variants,
                "fingerprint": fingerprint,
            },
            f,
            indent=2,
        )
    bound_met = 0 < measured["tree_peak_pss_bytes"] <= MODELS[args.model].bound_bytes
    return measured["exit_code"] or (0 if bound_met else 3)


if __name__ == "__main__":
    sys.exit(main())
