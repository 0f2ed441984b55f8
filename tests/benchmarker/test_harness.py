"""The harness on the real digits model: figures, accuracy, broken and failing variants."""

from __future__ import annotations

import os

import numpy as np
import pytest

from components.benchmarker.accuracy import AccuracyJob, run_accuracy_pipeline
from components.benchmarker.harness import (
    BenchmarkRequest,
    BenchmarkSettings,
    VariantSpec,
    run_benchmark_in_subprocess,
)
from components.benchmarker.selection import Gate, VariantResult, choose_best_variant
from components.common.examples_io import read_records, split_files
from components.common.feeds import ExampleRecords
from components.common.graph_io import graph_def_callable, save_graph_def
from components.common.tasks import LabelSettings, plan_evaluation
from components.freezer.freezing import freeze_function

pytestmark = pytest.mark.slow

FAST = BenchmarkSettings(
    warmup_calls=5,
    latency_window_size=20,
    throughput_window_size=3,
    time_budget_s=3.0,
    throughput_batch_sizes=(1, 8),
)


def _write_variant(directory, frozen) -> str:
    save_graph_def(frozen.graph_def, str(directory))
    frozen.signature.save(str(directory))
    return str(directory)


@pytest.fixture(scope="module")
def broken_variant_dir(tmp_path_factory, frozen_digits):
    """The digits CNN with its class scores reversed: plausible, confident and wrong."""
    import tensorflow as tf

    from components.common.graph_io import graph_def_function

    original = graph_def_function(frozen_digits.graph_def, frozen_digits.signature)

    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 1], tf.float32, name="image")])
    def reversed_scores(image):
        return {"output_0": tf.reverse(original(image)[0], axis=[1])}

    broken = freeze_function(reversed_scores.get_concrete_function(), "serving_default")
    return _write_variant(tmp_path_factory.mktemp("broken"), broken)


@pytest.fixture(scope="module")
def harness_result(tmp_path_factory, embedded_default, frozen_digits, broken_variant_dir):
    frozen_dir = _write_variant(tmp_path_factory.mktemp("frozen"), frozen_digits)
    corrupt_dir = tmp_path_factory.mktemp("corrupt")
    (corrupt_dir / "graph.pb").write_bytes(b"not a graph")
    frozen_digits.signature.save(str(corrupt_dir))
    request = BenchmarkRequest(
        variants=[
            VariantSpec("baseline", "saved_model", embedded_default.model_uri),
            VariantSpec("frozen_graph", "graphdef", frozen_dir),
            VariantSpec("broken", "graphdef", broken_variant_dir),
            VariantSpec("corrupt", "graphdef", str(corrupt_dir)),
            VariantSpec("null", "null", frozen_dir),
        ],
        baseline_name="baseline",
        examples_uri=embedded_default.examples_uri,
        settings=FAST,
    )
    raw = run_benchmark_in_subprocess(request, str(tmp_path_factory.mktemp("work")))
    return {v["name"]: v for v in raw["variants"]}, raw


def test_latency_and_throughput_figures_are_sane(harness_result):
    rows, raw = harness_result
    for name in ("baseline", "frozen_graph"):
        summary = rows[name]["latency"]["summary"]
        assert 0 < summary["min_ms"] <= summary["p50_ms"] <= summary["p90_ms"]
        assert summary["p90_ms"] <= summary["p99_ms"] <= summary["max_ms"]
        assert summary["count"] >= FAST.latency_window_size
        assert rows[name]["load_s"] > 0 and rows[name]["first_call_s"] > 0
        assert set(rows[name]["throughput"]) == {"1", "8"}
        assert rows[name]["throughput"]["8"]["images_per_s"] > 0
    assert raw["fingerprint"]["intra_op_threads"] == FAST.intra_op_threads
    assert raw["settings"]["time_budget_s"] == FAST.time_budget_s


def test_null_backend_costs_far_less_than_the_model(harness_result):
    rows, _ = harness_result
    overhead = rows["null"]["latency"]["summary"]["p50_ms"]
    model = rows["frozen_graph"]["latency"]["summary"]["p50_ms"]
    assert overhead < 0.02 * model


def test_accuracy_and_agreement_are_measured_against_the_baseline(harness_result):
    rows, raw = harness_result
    assert raw["eval_examples"] == 449
    baseline, frozen = rows["baseline"]["metrics"], rows["frozen_graph"]["metrics"]
    assert baseline["top1"] == pytest.approx(frozen["top1"])
    assert rows["frozen_graph"]["faithfulness"]["output_0"]["agreement"] == 1.0
    assert rows["frozen_graph"]["faithfulness"]["output_0"]["max_abs_diff"] < 1e-4
    assert baseline["top5"] >= baseline["top1"]
    assert raw["evaluation"]["task"] == "multiclass" and raw["evaluation"]["labels"] == "label"


def test_a_variant_that_cannot_load_is_a_failed_row(harness_result):
    rows, _ = harness_result
    assert rows["corrupt"]["status"] == "failed"
    assert "load failed" in rows["corrupt"]["failure_reason"]
    assert rows["frozen_graph"]["status"] == "ok"


def test_broken_variant_is_caught_by_agreement_and_never_blessed(harness_result):
    rows, _ = harness_result
    assert rows["broken"]["faithfulness"]["output_0"]["agreement"] < 0.5
    results = [
        VariantResult.from_harness_json(r, "output_0") for r in rows.values() if r["name"] != "null"
    ]
    # Even with an absurd accuracy budget, the agreement gate keeps it out.
    selection = choose_best_variant(results, baseline_name="baseline", gate=Gate(max_drop=1.0))
    assert selection.winner != "broken"
    assert not selection.verdicts["broken"].eligible
    assert any("agree" in reason for reason in selection.verdicts["broken"].reasons)


def _frozen_graph_job(examples_uri, frozen, variant_uri) -> AccuracyJob:
    """The accuracy job of one graphdef variant that is its own baseline."""
    records = ExampleRecords(read_records(examples_uri, limit=8), examples_uri)
    return AccuracyJob(
        variants=(("frozen_graph", "graphdef", variant_uri),),
        signatures={"frozen_graph": frozen.signature},
        baseline_name="frozen_graph",
        plan=plan_evaluation(frozen.signature.outputs, LabelSettings(), records),
        settings=BenchmarkSettings(accuracy_batch_size=32, device="CPU:0"),
    )


def test_accuracy_pipeline_matches_a_direct_computation(
    tmp_path, embedded_default, frozen_digits, digits_eval
):
    frozen_dir = _write_variant(tmp_path / "frozen", frozen_digits)
    uri = embedded_default.examples_uri
    job = _frozen_graph_job(uri, frozen_digits, frozen_dir)
    metrics = run_accuracy_pipeline(job, split_files(uri), result_dir=str(tmp_path / "out"))

    (scores,) = graph_def_callable(frozen_digits.graph_def, frozen_digits.signature)(
        digits_eval.images
    )
    expected_top1 = float(np.mean(scores.argmax(1) == digits_eval.labels))
    assert metrics["frozen_graph"]["eval_examples"] == len(digits_eval)
    assert metrics["frozen_graph"]["metrics"]["top1"] == pytest.approx(expected_top1)
    assert metrics["frozen_graph"]["faithfulness"] == {}  # It is the baseline.
    assert os.path.exists(tmp_path / "out" / "accuracy_counts")


def test_the_accuracy_pass_borrows_the_variants_this_process_holds(
    tmp_path, embedded_default, frozen_digits
):
    """On the in-process runner the DoFn scores with the harness's loaded variant: here
    the URI it is given holds nothing, so loading a second copy would fail."""
    from components.benchmarker.accuracy import share_loaded, unshare
    from components.runtimes import ThreadSettings, backend_for

    frozen_dir = _write_variant(tmp_path / "frozen", frozen_digits)
    variant = backend_for("graphdef").load(frozen_dir, ThreadSettings(2, 1), "CPU:0")
    nowhere = str(tmp_path / "nothing-here")
    uri = embedded_default.examples_uri
    job = _frozen_graph_job(uri, frozen_digits, nowhere)
    share_loaded("graphdef", nowhere, variant)
    try:
        metrics = run_accuracy_pipeline(job, split_files(uri), result_dir=str(tmp_path / "out"))
    finally:
        unshare("graphdef", nowhere)
    assert "error" not in metrics["frozen_graph"], metrics
    assert metrics["frozen_graph"]["metrics"]["top1"] > 0.9
    unshared = run_accuracy_pipeline(job, split_files(uri), result_dir=str(tmp_path / "out2"))
    assert "error" in unshared["frozen_graph"]  # Not shared: it really loads from the URI.


def test_variants_are_timed_in_groups_that_fit_and_one_past_its_estimate_is_tried_alone(
    tmp_path, embedded_default, frozen_digits
):
    """A budget for the baseline and one graph at a time: the graphs are timed in groups,
    each in a process of its own. A graph whose estimate does not fit even beside the
    baseline alone is loaded alone under the process's memory cap and measured; in a
    process without a cap, it is refused with the reason."""
    from components.benchmarker.harness import BenchmarkSettings as Settings
    from components.benchmarker.memory import estimate_load_bytes
    from components.common.isolation import run_isolated
    from components.common.sizes import directory_size_bytes
    from components.runtimes import backend_for

    def need(model_format, uri):
        factor = backend_for(model_format).memory_per_artifact_byte
        return estimate_load_bytes(factor, directory_size_bytes(uri))

    first = _write_variant(tmp_path / "first", frozen_digits)
    second = _write_variant(tmp_path / "second", frozen_digits)
    huge = _write_variant(tmp_path / "huge", frozen_digits)
    # Padding (never loaded) makes the estimates large beside the uncertain part: the
    # budget also covers what the benchmark process holds before loading (TF's runtime,
    # the inputs), guessed here as BASE. A graph's estimate is 1.44 GiB, so the guess may
    # be 0.7 GiB off either way and `second` still fits only in a group of its own.
    for name, mebibytes in (("first", 80), ("second", 80), ("huge", 200)):
        (tmp_path / name / "padding.bin").write_bytes(b"\0" * (mebibytes << 20))
    base = int(0.9 * (1 << 30))
    budget = (
        base + need("saved_model", embedded_default.model_uri) + int(1.5 * need("graphdef", first))
    )
    settings = Settings.from_json(
        {**FAST.to_json(), "memory_budget_bytes": budget, "throughput_batch_sizes": [8]}
    )
    baseline = VariantSpec("baseline", "saved_model", embedded_default.model_uri)
    request = BenchmarkRequest(
        variants=[
            baseline,
            VariantSpec("first", "graphdef", first),
            VariantSpec("huge", "graphdef", huge),
            VariantSpec("second", "graphdef", second),
        ],
        baseline_name="baseline",
        examples_uri=embedded_default.examples_uri,
        settings=settings,
    )
    from components.benchmarker.progress import ProgressDisplay

    display = ProgressDisplay()
    raw = run_benchmark_in_subprocess(request, str(tmp_path / "work"), display=display)
    rows = {v["name"]: v for v in raw["variants"]}
    steps = [(e["what"], e["variant"]) for e in display.events if e["event"] == "step"]
    # `huge` does not fit beside `first`: the first group is scored and timed, and only
    # then, in a second process that loads the baseline again, is `huge` loaded, alone
    # and past its estimate; `second` does not fit beside its estimate and goes third.
    assert steps[:3] == [("loaded", "baseline"), ("loaded", "first"), ("accuracy", "")]
    assert raw["timing_groups"] == 3
    assert steps.count(("loaded", "baseline")) == 3
    past = [e for e in display.events if e["event"] == "step" and e["variant"] == "huge"]
    assert "past its estimate: tried under the memory cap" in past[0]["detail"]
    assert steps.count(("accuracy", "")) == 3  # One pass per group.
    assert ("latency", "second") in steps and ("throughput at batch 8", "second") in steps
    assert display.events[-1]["done"] == display.events[-1]["total"] == len(steps)
    for name in ("baseline", "first", "huge", "second"):
        assert rows[name]["status"] == "ok", rows[name]
        assert rows[name]["latency"]["summary"]["p50_ms"] > 0
        assert rows[name]["metrics"]["top1"] > 0.9
    assert [rows[n]["timing_group"] for n in ("first", "huge", "second")] == [0, 1, 2]
    assert abs(raw["process_rss_before_variants_bytes"] - base) < 0.7 * (1 << 30)
    # The later groups are still judged against the baseline, loaded in their processes
    # too; the baseline's row is the first group's, where it was timed.
    assert rows["second"]["faithfulness"]["output_0"]["agreement"] == 1.0
    assert rows["baseline"]["timing_group"] == 0

    # Without a cap (no budget: the machine's memory is the bound), nothing stops a
    # variant that outgrows its estimate, so the estimate refuses it before it loads.
    uncapped = run_isolated(
        "components.benchmarker.harness:run_benchmark_json",
        {
            "request": BenchmarkRequest(
                variants=[baseline, VariantSpec("huge", "graphdef", huge)],
                baseline_name="baseline",
                examples_uri=embedded_default.examples_uri,
                settings=settings,
            ).to_json()
        },
        str(tmp_path / "uncapped"),
    )
    assert uncapped.ok, uncapped.failure("the uncapped benchmark process")
    refused = {v["name"]: v for v in uncapped.result["variants"]}["huge"]
    assert refused["status"] == "failed"
    assert "not loaded" in refused["failure_reason"]
    assert "memory_budget_bytes" in refused["failure_reason"]


def test_a_later_timing_group_that_crashes_fails_its_variants_and_keeps_the_first_groups(
    tmp_path, monkeypatch
):
    """Each memory group is a process; when a later one dies, the figures already taken
    stay and only the variants it held become failed rows naming the crash."""
    from components.benchmarker import harness

    def group_process(request, workdir, timeout_s):
        names = [spec.name for spec in request.variants]
        if request.timing_group == 0:
            return {
                "variants": [{"name": n, "status": "ok", "timing_group": 0} for n in names[:2]]
                + [{"name": n, "status": "ok"} for n in names[2:]],
                "deferred": names[2:],
                "progress_position": [9, 20],
                "process_peak_rss_bytes": 5,
                "timing_groups": 1,
            }
        assert names == ["baseline", "second", "third"]
        assert request.progress_position == (9, 20)
        raise harness.HarnessCrashed("the benchmark process was killed by signal 9")

    monkeypatch.setattr(harness, "_run_group_process", group_process)
    request = BenchmarkRequest(
        variants=[
            VariantSpec(n, "graphdef", str(tmp_path))
            for n in ("baseline", "first", "second", "third")
        ],
        baseline_name="baseline",
        examples_uri=str(tmp_path),
        settings=FAST,
    )
    raw = harness.run_benchmark_in_subprocess(request, str(tmp_path))
    rows = {row["name"]: row for row in raw["variants"]}
    assert [rows[n]["status"] for n in ("baseline", "first")] == ["ok", "ok"]
    for name in ("second", "third"):
        assert rows[name]["status"] == "failed"
        assert "timing group 1" in rows[name]["failure_reason"]
        assert "signal 9" in rows[name]["failure_reason"]
    assert raw["timing_groups"] == 1 and "deferred" not in raw


def test_a_group_stopped_at_its_cap_runs_again_one_variant_per_process(tmp_path, monkeypatch):
    """A variant that outgrew its estimate stops its group's process at the cap; the group
    and the later ones run one variant per process, so only that variant fails, with the
    cap's reason, and the baseline is still timed in group 0."""
    from components.benchmarker import harness

    processes: list[tuple[int, list[str], bool]] = []

    def group_process(request, workdir, timeout_s):
        names = [spec.name for spec in request.variants]
        processes.append((request.timing_group, names, request.one_variant_per_group))
        held = names[1:2] if request.one_variant_per_group else names[1:]
        if "greedy" in held:
            raise harness.HarnessStoppedAtCap("reached 5.1 GiB, past its cap of 5.0 GiB")
        return {
            "variants": [
                {"name": n, "status": "ok", "timing_group": request.timing_group}
                for n in [names[0], *held]
            ],
            "deferred": [n for n in names[1:] if n not in held],
            "progress_position": [len(processes), 20],
            "process_peak_rss_bytes": 5,
            "timing_groups": 1,
        }

    monkeypatch.setattr(harness, "_run_group_process", group_process)
    request = BenchmarkRequest(
        variants=[
            VariantSpec(n, "graphdef", str(tmp_path))
            for n in ("baseline", "first", "greedy", "third", "fourth")
        ],
        baseline_name="baseline",
        examples_uri=str(tmp_path),
        settings=FAST,
    )
    raw = harness.run_benchmark_in_subprocess(request, str(tmp_path))
    rows = {row["name"]: row for row in raw["variants"]}
    assert processes == [
        (0, ["baseline", "first", "greedy", "third", "fourth"], False),  # Stopped at the cap.
        (0, ["baseline", "first", "greedy", "third", "fourth"], True),  # Measures `first`.
        # Later groups go one variant per process too, rather than be stopped again.
        (1, ["baseline", "greedy", "third", "fourth"], True),  # `greedy` alone: stopped.
        (1, ["baseline", "third", "fourth"], True),  # The rest go on without it.
        (2, ["baseline", "fourth"], True),
    ]
    assert [row["name"] for row in raw["variants"]] == list(rows)  # The request's order.
    assert rows["greedy"]["status"] == "failed"
    assert "holding only the baseline and this variant" in rows["greedy"]["failure_reason"]
    assert "past its cap of 5.0 GiB" in rows["greedy"]["failure_reason"]
    for name in ("baseline", "first", "third", "fourth"):
        assert rows[name]["status"] == "ok", rows[name]
    assert rows["baseline"]["timing_group"] == 0


def test_a_baseline_past_the_cap_on_its_own_is_not_retried_forever(tmp_path, monkeypatch):
    from components.benchmarker import harness

    calls = []

    def group_process(request, workdir, timeout_s):
        calls.append([spec.name for spec in request.variants])
        raise harness.HarnessStoppedAtCap("reached 9 GiB, past its cap of 1 GiB")

    monkeypatch.setattr(harness, "_run_group_process", group_process)
    request = BenchmarkRequest(
        variants=[VariantSpec(n, "graphdef", str(tmp_path)) for n in ("baseline", "a", "b")],
        baseline_name="baseline",
        examples_uri=str(tmp_path),
        settings=FAST,
    )
    with pytest.raises(harness.HarnessStoppedAtCap, match="past its cap"):
        harness.run_benchmark_in_subprocess(request, str(tmp_path))
    # Split, then each variant alone, then the baseline alone, which ends it.
    assert calls == [["baseline", "a", "b"]] * 2 + [["baseline", "b"], ["baseline"]]


def test_a_one_variant_group_measures_its_first_variant_and_defers_the_rest(
    tmp_path, embedded_default, frozen_digits
):
    """The harness's side of the retry at the cap, in a real benchmark process."""
    from components.benchmarker import harness

    first = _write_variant(tmp_path / "first", frozen_digits)
    second = _write_variant(tmp_path / "second", frozen_digits)
    request = BenchmarkRequest(
        variants=[
            VariantSpec("baseline", "saved_model", embedded_default.model_uri),
            VariantSpec("first", "graphdef", first),
            VariantSpec("second", "graphdef", second),
        ],
        baseline_name="baseline",
        examples_uri=embedded_default.examples_uri,
        settings=BenchmarkSettings.from_json({**FAST.to_json(), "throughput_batch_sizes": [8]}),
        one_variant_per_group=True,
    )
    raw = harness._run_group_process(request, str(tmp_path / "work"), None)
    rows = {row["name"]: row for row in raw["variants"]}
    assert raw["deferred"] == ["second"]
    assert rows["first"]["status"] == "ok" and rows["first"]["latency"]["summary"]["p50_ms"] > 0
    assert "latency" not in rows["second"]
