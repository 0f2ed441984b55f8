"""The command line: fast help, clear usage errors."""

from __future__ import annotations

import subprocess
import sys

from pipelines import cli


def test_help_imports_neither_tensorflow_nor_tfx():
    code = (
        "import sys\n"
        "from pipelines import cli\n"
        "try:\n"
        "    cli.main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'tfx', 'keras', 'apache_beam', 'ml_metadata'))\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "HEAVY []" in result.stdout
    assert "run" in result.stdout


def test_python_dash_m_pipelines_is_the_same_command():
    result = subprocess.run(
        [sys.executable, "-m", "pipelines", "run", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "--model" in result.stdout and "--examples" in result.stdout


def test_model_without_examples_is_a_clear_error(capsys, tmp_path):
    code = cli.main(["run", "--model", str(tmp_path), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == cli.EXIT_FAILED
    assert "Pass both --model and --examples" in err
    assert "Traceback" not in err


def test_no_command_prints_help_and_fails(capsys):
    assert cli.main([]) == cli.EXIT_FAILED
    assert "COMMAND" in capsys.readouterr().out


def test_the_task_flag_offers_exactly_the_registered_tasks():
    from components.common.tasks import TASK_AUTO, task_names
    from pipelines.run_command import TASK_CHOICES

    assert (TASK_AUTO, *task_names()) == TASK_CHOICES


def test_threads_flags_set_the_benchmark_thread_budget_and_default_to_its_own():
    from components.benchmarker.harness import BenchmarkSettings
    from pipelines.run_command import pipeline_settings

    parser = cli.build_parser()
    given = pipeline_settings(
        parser.parse_args(["run", "--threads", "4", "--inter-op-threads", "3"])
    )
    assert given.benchmark().intra_op_threads == 4
    assert given.benchmark().inter_op_threads == 3
    default = pipeline_settings(parser.parse_args(["run"])).benchmark()
    assert default.intra_op_threads == BenchmarkSettings().intra_op_threads
    assert default.inter_op_threads == BenchmarkSettings().inter_op_threads


def test_the_memory_budget_reaches_every_transform_and_the_benchmark():
    from tfx.types import channel, standard_artifacts

    from pipelines.pipeline import optimizer_components
    from pipelines.run_command import pipeline_settings

    model = channel.Channel(type=standard_artifacts.Model)
    examples = channel.Channel(type=standard_artifacts.Examples)

    settings = pipeline_settings(cli.build_parser().parse_args(["run", "--memory-budget", "9Gi"]))
    assert settings.memory_budget_bytes == 9 << 30
    assert settings.benchmark().memory_budget_bytes == 9 << 30
    components = optimizer_components(model, examples, settings)
    producers = [c for c in components if "memory_budget_bytes" in c.exec_properties]
    # Every producer of a variant: the Freezer and Benchmarker have no child to cap.
    assert len(producers) == len(components) - 2
    assert {c.exec_properties["memory_budget_bytes"] for c in producers} == {9 << 30}
    default = pipeline_settings(cli.build_parser().parse_args(["run"]))
    unset = optimizer_components(model, examples, default)
    assert all(c.exec_properties.get("memory_budget_bytes") is None for c in unset)


def test_the_accuracy_aware_flags_reach_every_accuracy_aware_producer():
    import json

    from tfx.types import channel, standard_artifacts

    from pipelines.pipeline import optimizer_components
    from pipelines.run_command import pipeline_settings

    args = cli.build_parser().parse_args(
        [
            "run",
            "--variants",
            "tflite_int8_aa,onnx_int8_aa,openvino_int8_aa,onnx_int8",
            "--int8-exclude",
            "re:.*stem.*",
            "--int8-calibration",
            "minmax",
            "--held-out-examples",
            "64",
            "--num-calibration",
            "50",
            "--max-fallback-layers",
            "3",
        ]
    )
    settings = pipeline_settings(args)
    components = optimizer_components(
        channel.Channel(type=standard_artifacts.Model),
        channel.Channel(type=standard_artifacts.Examples),
        settings,
    )
    searches = {
        c.exec_properties["mode"]: json.loads(c.exec_properties["int8_search"])
        for c in components
        if c.exec_properties.get("int8_search")
    }
    # The Quantizer's and the RuntimeConverter's accuracy-aware modes; not onnx_int8.
    assert set(searches) == {"int8_aa", "onnx_int8_aa", "openvino_int8_aa"}
    for search in searches.values():
        assert search["exclude"] == ["re:.*stem.*"] and search["calibration_method"] == "minmax"
        assert search["held_out_examples"] == 64 and search["max_fallback_layers"] == 3
    calibrating = [c for c in components if "num_calibration" in c.exec_properties]
    assert {c.exec_properties["num_calibration"] for c in calibrating} == {50}


def test_a_memory_budget_that_is_not_a_quantity_is_a_usage_error(capsys):
    import pytest

    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["run", "--memory-budget", "ten"])
    assert "Kubernetes suffixes" in capsys.readouterr().err


def test_a_thread_count_below_one_is_a_usage_error(capsys):
    import pytest

    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["run", "--threads", "0"])
    assert "at least 1" in capsys.readouterr().err


def test_a_bare_keyboard_interrupt_is_one_line_and_exit_130(capsys, monkeypatch):
    from pipelines import run_command
    from pipelines.run_failures import RunInterrupted, interrupted_message

    def interrupted(args):
        raise RunInterrupted(interrupted_message("Benchmarker", 7) + " [while running 'x']")

    # build_parser binds `execute` to the module's run_command when main() calls it.
    monkeypatch.setattr(run_command, "run_command", interrupted)
    assert cli.main(["run"]) == cli.EXIT_INTERRUPTED == 130
    err = capsys.readouterr().err
    assert err.splitlines() == [interrupted_message("Benchmarker", 7)]
