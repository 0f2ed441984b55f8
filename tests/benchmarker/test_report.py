"""report.json, Markdown, HTML and the CLI table built from one benchmark's results.

The latencies come from the real interleaved scheduler driven by a fake clock, so the
report holds exactly what a run would produce, and the numbers are known.
"""

from __future__ import annotations

import datetime
import html
import html.parser
import json
import math
import re
from collections import defaultdict

import numpy as np
import pytest

from components.benchmarker.fingerprint import HardwareFingerprint
from components.benchmarker.report import (
    REPORT_SCHEMA_VERSION,
    build_report,
    pareto_front,
    read_report,
    render_html,
    render_markdown,
    render_text_table,
    report_custom_properties,
    write_report,
)
from components.benchmarker.selection import VariantResult, choose_best_variant
from components.benchmarker.stats import StabilityCriterion, measure_interleaved
from components.common.errors import UserInputError

BASELINE = "frozen_graph"
STARTED = datetime.datetime(2026, 11, 22, 3, 0, 0, tzinfo=datetime.timezone.utc)


def measured_latencies(typical_ms: dict[str, float], noisy: set[str] = frozenset()):
    """Runs the real scheduler on a fake clock: lognormal jitter, noisy ones alternate."""
    now = [0.0]
    rng = np.random.default_rng(7)

    def make(name: str, typical: float):
        calls = [0]

        def run() -> None:
            calls[0] += 1
            slow = name in noisy and (calls[0] // 20) % 2 == 1
            now[0] += typical * (3.0 if slow else 1.0) * rng.lognormal(0, 0.05) / 1000.0

        return run

    return measure_interleaved(
        {name: make(name, typical) for name, typical in typical_ms.items()},
        warmup_calls=5,
        window_size=20,
        criterion=StabilityCriterion(cv_threshold=0.05, min_windows=3, max_windows=6),
        clock=lambda: now[0],
    )


@pytest.fixture(scope="module")
def variants() -> list[VariantResult]:
    latency = measured_latencies(
        {BASELINE: 0.7, "tflite_fp32": 0.05, "tflite_int8": 0.03, "bf16_graph": 0.9},
        noisy={"bf16_graph"},
    )
    common = {"format": "tflite", "rss_growth_bytes": 300 << 20, "load_s": 0.2, "device": "CPU:0"}

    def throughput(name: str) -> dict[int, float]:
        p50 = latency[name].summary.p50_ms
        return {1: 1000 / p50, 8: 6000 / p50, 32: 20_000 / p50}

    return [
        VariantResult(
            name=BASELINE,
            **{**common, "format": "graphdef"},
            latency=latency[BASELINE],
            throughput_images_per_s=throughput(BASELINE),
            throughput_stable={1: True, 8: True, 32: True},
            metrics={"top1": 0.9800, "top5": 1.0},
            agreement=1.0,
            max_abs_diff=0.0,
            size_bytes=1_200_000,
            first_call_s=0.05,
        ),
        VariantResult(
            name="tflite_fp32",
            **common,
            latency=latency["tflite_fp32"],
            throughput_images_per_s=throughput("tflite_fp32"),
            metrics={"top1": 0.9800, "top5": 1.0},
            agreement=1.0,
            max_abs_diff=2.4e-7,
            size_bytes=400_000,
            first_call_s=0.001,
        ),
        VariantResult(
            name="tflite_int8",
            **common,
            latency=latency["tflite_int8"],
            throughput_images_per_s=throughput("tflite_int8"),
            metrics={"top1": 0.9532, "top5": 0.998},
            agreement=0.96,
            max_abs_diff=0.08,
            size_bytes=110_000,
            first_call_s=0.001,
        ),
        VariantResult(
            name="bf16_graph",
            **{**common, "format": "graphdef"},
            latency=latency["bf16_graph"],
            throughput_images_per_s=throughput("bf16_graph"),
            throughput_stable={1: True, 8: False, 32: True},
            metrics={"top1": 0.9800, "top5": 1.0},
            agreement=0.998,
            max_abs_diff=0.004,
            size_bytes=700_000,
        ),
        VariantResult(
            name="xla_aot",
            format="xla_aot",
            status="failed",
            failure_reason="tfcompile: unsupported op <Einsum> | retry with --no-aot",
        ),
    ]


@pytest.fixture(scope="module")
def fingerprint() -> HardwareFingerprint:
    return HardwareFingerprint(
        cpu_vendor="AuthenticAMD",
        cpu_model="AMD EPYC <test> & co",
        cpu_flags=("avx2", "avx512_bf16", "avx512_vnni", "avx512f"),
        logical_cores=2,
        usable_cores=2,
        intra_op_threads=2,
        inter_op_threads=1,
        tflite_threads=2,
        gpu_model=None,
        gpu_driver=None,
        gpu_count=0,
        tensorflow_version="2.16.2",
        tflite_version="2.16.2",
        xla_available=True,
        onednn_enabled=True,
        machine="x86_64",
        os="Linux",
        python_version="3.10.13",
    )


# What the harness reports for a labelled 10-class classifier (tasks.EvaluationPlan.describe).
EVALUATION = {
    "primary_output": "output_0",
    "task": "multiclass",
    "primary_metric": "top1",
    "metrics": ["top1", "top5"],
    "higher_is_better": {"top1": True, "top5": True},
    "decides": True,
    "labels": "label",
}


@pytest.fixture(scope="module")
def report(variants, fingerprint) -> dict:
    selection = choose_best_variant(variants, BASELINE)
    return build_report(
        variants,
        selection,
        fingerprint,
        settings={"warmup_calls": 5, "throughput_batch_sizes": (1, 8, 32)},
        started_at=STARTED,
        finished_at=STARTED + datetime.timedelta(seconds=95),
        warnings=["int8 variant tflite_int8 needs AVX512-VNNI or AMX-INT8 for fast kernels"],
        inputs={"model_uri": "/models/digits", "eval_examples": 449},
        tool_version="0.1.0",
        evaluation=EVALUATION,
    )


class ElementCollector(html.parser.HTMLParser):
    """Every start tag with its attributes, plus the text inside each element id."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text_by_id: dict[str, str] = defaultdict(str)
        self._open_ids: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        attributes = {k: v or "" for k, v in attrs}
        self.elements.append((tag, attributes))
        if tag not in ("meta", "br", "img", "input", "link", "hr"):
            self._open_ids.append((tag, attributes.get("id")))

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        while self._open_ids:
            open_tag, _ = self._open_ids.pop()
            if open_tag == tag:
                break

    def handle_data(self, data):
        for _, element_id in self._open_ids:
            if element_id:
                self.text_by_id[element_id] += data

    def find(self, tag: str, **attributes: str) -> list[dict[str, str]]:
        return [
            attrs
            for t, attrs in self.elements
            if t == tag
            and all(
                value in attrs.get(key.rstrip("_"), "").split()
                if key.endswith("_")
                else attrs.get(key) == value
                for key, value in attributes.items()
            )
        ]


def parse(page: str) -> ElementCollector:
    parser = ElementCollector()
    parser.feed(page)
    parser.close()
    return parser


def test_build_report_is_strict_json_with_schema_version(report):
    text = json.dumps(report, allow_nan=False)

    assert json.loads(text)["schema_version"] == REPORT_SCHEMA_VERSION == "2.2"
    assert report["started_at"] == "2026-11-22T03:00:00+00:00"
    assert report["duration_s"] == 95.0
    assert report["batch_sizes"] == [1, 8, 32]
    assert report["settings"]["throughput_batch_sizes"] == [1, 8, 32]
    assert [row["name"] for row in report["variants"]] == [
        BASELINE, "tflite_fp32", "tflite_int8", "bf16_graph", "xla_aot",
    ]  # fmt: skip


def test_build_report_computes_speedup_against_the_baseline_p50(report, variants):
    rows = {row["name"]: row for row in report["variants"]}
    baseline_p50 = variants[0].summary.p50_ms

    assert rows[BASELINE]["speedup_vs_baseline_p50"] == pytest.approx(1.0)
    assert rows["tflite_fp32"]["speedup_vs_baseline_p50"] == pytest.approx(
        baseline_p50 / variants[1].summary.p50_ms
    )
    assert rows["tflite_fp32"]["speedup_vs_baseline_p50"] == pytest.approx(14.0, rel=0.1)
    assert rows["xla_aot"]["speedup_vs_baseline_p50"] is None


def test_build_report_warns_about_unsettled_measurements(report):
    warnings = report["warnings"]

    assert warnings[0].startswith("int8 variant tflite_int8")
    assert any(w.startswith("latency of bf16_graph never settled") for w in warnings)
    assert "throughput of bf16_graph never settled at batch sizes 8" in warnings


def test_build_report_selection_and_pareto_front(report):
    selection = report["selection"]

    assert selection["winner"] == "tflite_fp32" and selection["blessed"]
    verdicts = {v["name"]: v for v in selection["verdicts"]}
    assert verdicts["tflite_int8"]["exclusions"] == ["disagrees_with_baseline", "accuracy_drop"]
    assert verdicts["bf16_graph"]["exclusions"] == ["unstable"]
    # int8 is faster but less accurate, fp32 as accurate as the (slower) baseline.
    assert report["pareto_front"] == ["tflite_int8", "tflite_fp32"]


def test_pareto_front_drops_dominated_and_failed_variants(variants):
    assert pareto_front(variants, "top1") == ["tflite_int8", "tflite_fp32"]
    assert pareto_front(variants[:1], "top1") == [BASELINE]


def test_render_html_is_self_contained_with_table_charts_and_fingerprint(report):
    page = render_html(report)
    dom = parse(page)

    # The results table: one row per variant, the winner's row marked.
    rows = dom.find("tr", **{"data-variant": "tflite_fp32"})
    assert len(rows) == 1 and "winner" in rows[0]["class"].split()
    assert len([a for t, a in dom.elements if t == "tr" and "data-variant" in a]) == 5
    # The answer's columns first: variant, speedup, p50, p99, throughput, metric,
    # faithfulness; then the rest.
    table = page[page.index('<table id="results">') : page.index("</thead>")]
    headers = re.findall(r"<th(?: class=text)?>(.*?)</th>", table)
    assert headers[:8] == [
        "variant", "speedup", "p50 ms", "p50 95% CI", "p99 ms", "p99 95% CI", "img/s@1", "img/s@8"
    ]  # fmt: skip
    assert headers.index("top1") < headers.index("agree") < headers.index("status")
    assert headers.index("status") < headers.index("stable") < headers.index("size")
    # One latency distribution per variant that ran, each with bars and p50/p90/p99 lines.
    distributions = dom.find("svg", class_="latency-distribution")
    assert sorted(d["data-variant"] for d in distributions) == sorted(
        [BASELINE, "tflite_fp32", "tflite_int8", "bf16_graph"]
    )
    assert len(dom.find("rect")) > 20
    assert len(dom.find("line", class_="p99")) == 4
    # Throughput chart: a line per variant that ran.
    assert dom.find("svg", id="throughput-chart")
    assert len(dom.find("polyline", class_="throughput-line")) == 4
    # Pareto plot: front and the winner ringed and labelled.
    assert dom.find("svg", id="pareto-plot")
    assert dom.find("polyline", class_="pareto-front")
    assert dom.find("circle", class_="winner", **{"data-variant": "tflite_fp32"})
    assert "winner: tflite_fp32" in dom.text_by_id["pareto-plot"]
    # Fingerprint, escaped.
    assert "AMD EPYC <test> & co" in dom.text_by_id["fingerprint"]
    assert "AMD EPYC &lt;test&gt; &amp; co" in page
    # Selection reason and failure reasons.
    assert "Blessed 'tflite_fp32'" in dom.text_by_id["selection"]
    assert "tfcompile: unsupported op <Einsum>" in dom.text_by_id["not-measured"]
    # Self-contained: no scripts, no external references.
    assert not dom.find("script") and not dom.find("link") and not dom.find("img")
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page


def test_render_html_without_throughput_or_winner_still_parses(variants, fingerprint):
    stripped = [
        VariantResult(**{**v.__dict__, "throughput_images_per_s": {}, "metrics": {}})
        for v in variants
    ]
    selection = choose_best_variant(stripped, BASELINE, max_p99_ms=1e-6)
    report = build_report(stripped, selection, fingerprint, {}, "2026-11-22T03:00:00Z")

    dom = parse(render_html(report))

    assert not selection.blessed
    assert dom.find("p", id="throughput-chart")
    assert dom.find("svg", id="pareto-plot")  # Falls back to agreement on the y axis.
    assert not dom.find("circle", class_="winner")
    assert "Not blessed (no_eligible_variant)" in dom.text_by_id["selection"]


def test_render_markdown_has_verdict_table_and_machine(report):
    markdown = render_markdown(report)

    assert "**Blessed: tflite_fp32**" in markdown
    assert "| variant | speedup | p50 ms | p50 95% CI | p99 ms |" in markdown
    assert "| frozen_graph (baseline) | 1.00x |" in markdown
    assert "unsupported op &lt;Einsum> \\| retry" in markdown  # Pipes and tags escaped.
    assert "- `tflite_int8`: excluded: disagrees with baseline" in markdown
    assert "| cpu_model | AMD EPYC &lt;test> & co |" in markdown


def test_render_text_table_aligns_columns_and_marks_the_winner(report):
    lines = render_text_table(report).splitlines()
    header, rule = lines[0], lines[1]
    rows = lines[2:7]

    assert len(header) == len(rule)
    assert rows[1].startswith("*") and "tflite_fp32" in rows[1]
    p50_end = header.index("p50 ms") + len("p50 ms")
    for row in rows[:4]:  # Numbers are right-aligned under their header.
        assert row[p50_end - 1] != " " and row[p50_end] == " "
    assert any(line.startswith("xla_aot failed: tfcompile") for line in lines)
    assert "Blessed: tflite_fp32" in lines


def test_write_report_writes_four_files_that_read_back(report, tmp_path):
    paths = write_report(report, str(tmp_path / "benchmark"))

    assert sorted(paths) == ["report.csv", "report.html", "report.json", "report.md"]
    assert read_report(str(tmp_path / "benchmark")) == report
    rows = [VariantResult.from_json(row) for row in read_report(paths["report.json"])["variants"]]
    assert rows[1].latency.summary.p50_ms == report["variants"][1]["latency"]["summary"]["p50_ms"]
    assert rows[3].throughput_stable == {1: True, 8: False, 32: True}


def test_read_report_refuses_another_major_schema_version(report, tmp_path):
    (tmp_path / "report.json").write_text(json.dumps({**report, "schema_version": "1.0"}))

    with pytest.raises(UserInputError, match="schema version 1.0"):
        read_report(str(tmp_path))


def test_report_custom_properties_name_the_winner_and_per_variant_numbers(report):
    properties = report_custom_properties(report)

    assert properties["winner"] == "tflite_fp32" and properties["blessed"] == 1
    assert properties["schema_version"] == "2.2"
    assert properties["baseline_p50_ms"] == properties["frozen_graph.p50_ms"]
    assert properties["tflite_fp32.speedup_p50"] > 5
    assert "xla_aot.p50_ms" not in properties
    assert all(
        isinstance(v, (int, float, str)) and not (isinstance(v, float) and math.isnan(v))
        for v in properties.values()
    )


def test_the_machine_is_in_the_report_properties_and_reads_as_one_lineage_line(report):
    from pipelines.lineage.queries import ArtifactNode
    from pipelines.lineage.render import key_properties, machine_text

    properties = report_custom_properties(report)

    assert properties["hardware_cpu_model"] == "AMD EPYC <test> & co"
    assert (properties["hardware_avx512_vnni"], properties["hardware_amx_int8"]) == (1, 0)
    assert properties["hardware_usable_cores"] == 2 and properties["hardware_gpu_count"] == 0
    assert properties["version_tensorflow"] == "2.16.2"
    assert "hardware_gpu_model" not in properties  # Unknown: left out, not "".
    assert machine_text(properties) == (
        "AMD EPYC <test> & co, 2 of 2 cores; flags: avx2 avx512f avx512_vnni avx512_bf16 "
        "(no AMX); no GPU; tensorflow 2.16.2, tflite 2.16.2"
    )
    gpu = {**properties, "hardware_gpu_count": 2, "hardware_gpu_model": "NVIDIA L4"}
    assert "GPU: 2 x NVIDIA L4, 23034 MiB each" in machine_text(
        {**gpu, "hardware_gpu_memory_mib": 23034}
    )
    node = ArtifactNode(
        id=1,
        type="components.BenchmarkReport",
        uri="",
        state="LIVE",
        created="",
        properties=properties,
    )
    assert not [key for key in key_properties(node) if key.startswith("hardware_")]


def test_the_report_says_what_every_input_was_fed_and_what_gated_the_blessing(
    variants, fingerprint
):
    selection = choose_best_variant(variants, BASELINE)
    data = {
        "inputs": [
            {
                "input": "image",
                "dtype": "uint8",
                "shape": [None, 32, 32, 1],
                "feature": "image",
                "kind": "image",
                "image": {"resize_method": "bilinear", "size": [32, 32], "scaling": "none"},
            }
        ],
        "calibration": "split 'train'",
        "evaluation": "split 'eval'",
    }
    evaluation = {**EVALUATION, "gate": selection.settings["gate"]}

    report = build_report(
        variants, selection, fingerprint, {}, STARTED, data=data, evaluation=evaluation
    )

    markdown = render_markdown(report)
    assert "## What was fed and scored" in markdown
    assert "decoded and resized to 32x32 (bilinear), scaling none" in markdown
    assert "calibration: split 'train'" in markdown
    assert "gate: top1 drop at most 1.00 points" in markdown
    assert "decoded and resized to 32x32" in render_html(report)


def test_the_first_screen_answers_with_the_blessing_drop_inputs_and_machine(report):
    from components.benchmarker.report import answer_lines

    answer = answer_lines(report)
    assert list(answer) == ["Blessed", "Metric", "Model", "Examples", "Machine"]
    assert answer["Blessed"].startswith("tflite_fp32: ")
    assert "x the baseline's speed" in answer["Blessed"] and "95% CI" in answer["Blessed"]
    assert "no drop" in answer["Metric"] and "top1 0.9800" in answer["Metric"]
    assert answer["Machine"].startswith("AMD EPYC <test> & co")
    page = render_html(report)
    # Before the results table, at the top of the page.
    assert page.index('id="answer"') < page.index('id="results"')
    assert html.escape(report["inputs"]["model_uri"]) in page[: page.index('id="results"')]


def test_p50_and_p99_get_bootstrap_intervals_around_them(report):
    for row in report["variants"]:
        if not row.get("latency"):
            continue
        summary = row["latency"]["summary"]
        interval = row["latency_ci"]
        assert interval["p50_ms"][0] <= summary["p50_ms"] <= interval["p50_ms"][1]
        assert interval["p99_ms"][0] <= summary["p99_ms"] <= interval["p99_ms"][1]
        assert interval["confidence"] == 0.95


def test_a_block_bootstrap_is_wider_than_a_call_by_call_one_on_drifting_calls():
    from components.benchmarker.stats import bootstrap_percentile_ci

    # Calls that drift in runs of 50 (a frequency step, a neighbour): resampling single
    # calls mixes the runs and understates how much the median can move.
    rng = np.random.default_rng(1)
    calls = np.concatenate([rng.normal(level, 0.01, 50) for level in (1.0, 1.2, 0.9, 1.1)])
    single = bootstrap_percentile_ci(calls, (50,), block_calls=1)[50]
    blocks = bootstrap_percentile_ci(calls, (50,), block_calls=50)[50]
    assert blocks[1] - blocks[0] > 2 * (single[1] - single[0])
    assert bootstrap_percentile_ci([2.0], (50, 99))[50] == (2.0, 2.0)


def test_the_csv_has_a_row_per_variant_with_raw_figures(report):
    import csv
    import io

    from components.benchmarker.report import render_csv

    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert [r["variant"] for r in rows] == [v["name"] for v in report["variants"]]
    winner = next(r for r in rows if r["blessed"] == "True")
    assert winner["variant"] == "tflite_fp32"
    source = next(v for v in report["variants"] if v["name"] == "tflite_fp32")
    assert float(winner["p50_ms"]) == source["latency"]["summary"]["p50_ms"]
    assert float(winner["p50_ci_low_ms"]) <= float(winner["p50_ms"])
    failed = next(r for r in rows if r["status"] == "failed")
    assert failed["failure_reason"] and failed["p50_ms"] == ""
    # The page offers the same document as a download.
    assert 'download="report.csv"' in render_html(report)


def test_histogram_bins_follow_each_variants_own_spread():
    from components.benchmarker.report import histogram_bins

    rng = np.random.default_rng(0)
    fast = rng.normal(0.04, 0.002, 600)  # a 0.04 ms TFLite call
    slow = fast * 1000  # the same shape at 40 ms
    assert histogram_bins(fast, fast.max() - fast.min()) == histogram_bins(
        slow, slow.max() - slow.min()
    )
    assert 8 <= histogram_bins(fast, fast.max() - fast.min()) <= 60


def test_close_percentile_labels_go_on_separate_rows(report):
    import copy

    from components.benchmarker.report import _distribution_svg

    row = copy.deepcopy(next(v for v in report["variants"] if v.get("latency")))
    summary = row["latency"]["summary"]
    summary["p90_ms"] = summary["p99_ms"] = summary["p50_ms"]  # all three on one spot
    svg = _distribution_svg(row, "#1f77b4")
    heights = re.findall(r'class="label-p\d\d" x="[^"]+" y="([^"]+)"', svg)
    assert len(set(heights)) == 3


def test_histogram_captions_fit_their_chart(report):
    from components.benchmarker.report import _distribution_svg

    for row in report["variants"]:
        if row["status"] == "ok" and row.get("latency"):
            svg = _distribution_svg(row, "#1f77b4")
            width = float(re.search(r'width="([0-9.]+)"', svg).group(1))
            for caption in re.findall(r'class="caption"[^>]*>([^<]*)<', svg):
                # About 5.6 px per character at font-size 10 in a sans-serif face.
                assert len(html.unescape(caption)) * 5.6 < width, caption
