"""A memory budget caps isolated children: past its cap a child stops with a reason."""

from __future__ import annotations

import os

from components.common.isolation import run_isolated
from components.common.memory_watch import rss_bytes

_CHILDREN = "tests.common.isolation_children"
MiB = 1 << 20


def _child_start_bytes(tmp_path) -> int:
    """What a child holds before it does anything (forked: the warm server's pages)."""
    outcome = run_isolated(f"{_CHILDREN}:resident_bytes", {}, str(tmp_path / "probe"))
    assert outcome.ok, outcome.failure("the probe")
    return int(outcome.result)


def _holding(mebibytes: int, hold_s: float, work, budget: int):
    """A child that holds `mebibytes` for `hold_s`, started under `budget`."""
    return run_isolated(
        f"{_CHILDREN}:holds_memory",
        {"mebibytes": mebibytes, "hold_s": hold_s},
        str(work),
        name="converter",
        memory_budget_bytes=budget,
    )


def test_a_child_past_its_cap_is_stopped_with_a_reason_and_one_within_it_is_not(tmp_path):
    start = _child_start_bytes(tmp_path)
    # The cap is the budget less what this process holds: here, the child's start + 200 MiB.
    budget = rss_bytes() + start + 200 * MiB
    work = tmp_path / "work"
    hungry = _holding(600, 5.0, work, budget)
    assert not hungry.ok
    assert hungry.error_type == "MemoryBudgetExceeded"
    assert "the converter process" in hungry.error_message
    assert "--memory-budget" in hungry.error_message
    # Stopped soon after the cap, well before it touched all 600 MiB.
    assert start + 200 * MiB < hungry.peak_rss_bytes < start + 500 * MiB
    assert not [name for name in os.listdir(work) if "_tmp_" in name]  # Its TMPDIR went too.
    modest = _holding(50, 0.5, work, budget)
    assert modest.ok, modest.failure("the modest child")


def test_a_nested_child_gets_its_parents_cap_less_the_parents_use(tmp_path):
    start = _child_start_bytes(tmp_path)
    budget = rss_bytes() + 2 * start + 300 * MiB
    outer = run_isolated(
        f"{_CHILDREN}:starts_a_hungry_child",
        {"workdir": str(tmp_path / "nested"), "mebibytes": 600},
        str(tmp_path / "outer"),
        name="produce",
        memory_budget_bytes=budget,
    )
    # The producer's child survives; its converter child is the one stopped.
    assert outer.ok, outer.failure("the outer child")
    assert outer.result["own_cap"] <= budget - rss_bytes() + 16 * MiB
    assert outer.result["nested_error"] == "MemoryBudgetExceeded"
    assert "the converter process" in outer.result["nested_message"]


def test_a_cap_the_caller_already_netted_bounds_what_the_child_adds(tmp_path):
    """The Benchmarker's share is net of everything that runs, the warm server's image
    among it: neither this process's memory nor the image the child is forked with is
    taken off it again, so a child adding less runs and one adding more is stopped."""
    cap = 200 * MiB

    def holding(mebibytes: int):
        return run_isolated(
            f"{_CHILDREN}:holds_memory",
            {"mebibytes": mebibytes, "hold_s": 3.0},
            str(tmp_path / "work"),
            name="benchmark_group_0",
            cap_bytes=cap,
        )

    assert holding(50).ok
    hungry = holding(600)
    assert hungry.error_type == "MemoryBudgetExceeded"
    assert "the benchmark_group_0 process" in hungry.error_message
    assert "beyond the" in hungry.error_message and "it started with" in hungry.error_message
    start = _child_start_bytes(tmp_path)  # About what the cap counted from.
    assert start + 100 * MiB < hungry.peak_rss_bytes < start + 500 * MiB


def test_without_a_budget_no_child_is_capped(tmp_path):
    outcome = run_isolated(
        f"{_CHILDREN}:holds_memory", {"mebibytes": 300}, str(tmp_path), name="converter"
    )
    assert outcome.ok, outcome.failure("the uncapped child")


def test_a_producer_whose_converter_outgrows_the_budget_publishes_a_failed_variant(
    tmp_path, frozen_digits
):
    """The Quantizer's own chain: its producer child starts the TFLite converter's child,
    which is the one stopped; the variant is a failed row naming the cap and the fix."""
    from tfx.types import standard_artifacts

    from components import artifacts
    from components.common.graph_io import save_graph_def
    from components.common.variant_production import VariantJob, produce_variant
    from components.quantizer.executor import quantize

    frozen = standard_artifacts.Model()
    frozen.uri = str(tmp_path / "frozen")
    save_graph_def(frozen_digits.graph_def, frozen.uri)
    frozen_digits.signature.save(frozen.uri)
    output = artifacts.QuantizedModel()
    output.uri = str(tmp_path / "out")
    start = _child_start_bytes(tmp_path)
    # Room for the producer's child (a fork of the warm server, plus the digits graph),
    # none beyond that for a converter that starts as a fork of the same server.
    budget = rss_bytes() + int(1.6 * start)
    exec_properties = {
        "mode": "float16",
        "num_calibration": 8,
        "inference_io_type": "float32",
        "batch_sizes": "[1]",
        "memory_budget_bytes": budget,
    }
    produce_variant(
        VariantJob("Quantizer", "float16", "tflite_float16"),
        {"frozen_graph": [frozen]},
        output,
        exec_properties,
        quantize,
    )

    assert output.get_string_custom_property("status") == "failed"
    reason = output.get_string_custom_property("failure_reason")
    assert "MemoryBudgetExceeded" in reason and "the tflite process" in reason, reason
    assert "--memory-budget" in reason
    assert os.listdir(output.uri) == ["FAILED.txt"]
