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
    from components.benchmarker.tasks import TASK_AUTO, task_names
    from pipelines.run_command import TASK_CHOICES

    assert (TASK_AUTO, *task_names()) == TASK_CHOICES
