"""The report's accuracy-aware section: step wording, labels that do not overlap, names."""

from __future__ import annotations

import re

from components.benchmarker.report_int8_search import (
    search_section_html,
    search_section_markdown,
    step_changes,
    summary_line,
)

SCOPE = "StatefulPartitionedCall/functional_1/"


def _step(excluded, drop, latency):
    return {
        "excluded": excluded,
        "metric_drop": drop,
        "metric": 0.9 - drop,
        "latency_ms": latency,
        "seconds": 0.1,
    }


def _record():
    a, b, c = (
        f"{SCOPE}{n};{SCOPE}{n}/BiasAdd" for n in ("conv_a/Relu", "pool/Max", "dense/MatMul")
    )
    steps = [
        _step([], 0.5, 0.05),
        _step([a, b], 0.5, 0.05),  # The same spot as step 0: labels must not collide.
        _step([a, b, c], 0.0, 0.07),
        _step([c], 0.3, 0.06),  # Pruning: a and b tried back in int8, rejected.
    ]
    return {
        "error_metric": "channel_normalized_mse",
        "max_drop": 0.01,
        "float_latency_ms": 0.09,
        "held_out_examples": 449,
        "sensitivity": [
            {"name": a, "op": "CONV_2D", "error": 2.0, "macs": 1000, "group": [b]},
            {"name": b, "op": "MAX_POOL_2D", "error": 0.0, "macs": 0, "group": []},
            {"name": c, "op": "FULLY_CONNECTED", "error": 0.05, "macs": 10, "group": []},
        ],
        "search": {
            "steps": steps,
            "chosen_step": 2,
            "fallback_layers": [a, b, c],
            "stop_reason": "within_budget",
            "reachable": True,
            "seconds": 0.4,
            "ranking": [a, c],
        },
    }


def test_steps_say_what_went_to_float_and_what_was_tried_back_in_int8():
    record = _record()
    names = {
        layer["name"]: layer["name"].split(";")[0][len(SCOPE) :] for layer in record["sensitivity"]
    }
    assert step_changes(record["search"], names) == [
        "naive int8",
        "in float: conv_a/Relu, pool/Max",
        "in float: dense/MatMul",
        "tried back in int8: conv_a/Relu, pool/Max",
    ]


def test_the_section_names_layers_without_their_shared_scope_and_labels_do_not_overlap():
    page = search_section_html({"accuracy_aware": {"tflite_int8_aa": _record()}})
    assert (
        'id="accuracy-aware"' in page
        and "conv_a/Relu" in page
        and SCOPE not in page.split("title=")[0]
    )
    labels = re.findall(r'<text x="([\d.]+)" y="([\d.]+)" font-size="10">(\d)</text>', page)
    spots = {(round(float(x)), round(float(y))) for x, y, _ in labels}
    assert len(labels) == 4 and len(spots) == 4, labels
    markdown = search_section_markdown({"accuracy_aware": {"tflite_int8_aa": _record()}})
    assert "| 2 (chosen) | 3 | +0.00 pt |" in markdown
    assert "In float: `conv_a/Relu`, `pool/Max`, `dense/MatMul`" in markdown
    assert search_section_html({"accuracy_aware": {}}) == ""


def test_a_group_s_unranked_ops_are_counted_with_their_layer_not_as_layers():
    # ORT's segments: a Conv goes to float with the Relu and MaxPool after it, which the
    # mode does not rank; the report counts and names the ranked layers only.
    record = _record()
    a, b, c = (layer["name"] for layer in record["sensitivity"])
    record["sensitivity"] = [record["sensitivity"][0], record["sensitivity"][2]]
    names = {a: "conv_a/Relu", b: "pool/Max", c: "dense/MatMul"}
    assert step_changes(record["search"], names, [a, c])[1] == (
        "in float: conv_a/Relu (with 1 MAC-free ops)"
    )
    line = summary_line(record)
    assert "2 layers in float" in line, line
    page = search_section_html({"accuracy_aware": {"onnx_int8_aa": record}})
    assert "with 1 MAC-free ops" in page
