"""Children forked by the warm server: TF is imported once, and isolation still holds."""

from __future__ import annotations

import os

import pytest

from components.common import warm_children
from components.common.isolation import PACKAGE_ROOT, run_isolated

_CHILDREN = "tests.common.isolation_children"


@pytest.fixture(autouse=True)
def _warm(monkeypatch):
    monkeypatch.setenv(warm_children.SWITCH_ENV, "1")


def test_children_are_forked_with_tensorflow_already_imported(tmp_path):
    first = run_isolated(f"{_CHILDREN}:what_the_child_had", {}, str(tmp_path), name="a")
    second = run_isolated(
        f"{_CHILDREN}:what_the_child_had", {}, str(tmp_path), name="b", env={"XLA_FLAGS": "--x"}
    )
    assert first.ok and second.ok, (first.failure("a"), second.failure("b"))
    assert first.result["tensorflow_preloaded"] and second.result["tensorflow_preloaded"]
    assert first.result["pid"] != second.result["pid"]  # A process each.
    assert second.result["xla_flags"] == "--x"  # Read at first use: safe to set after fork.
    assert first.result["cwd"] == PACKAGE_ROOT
    assert first.peak_rss_bytes > 0


def test_an_environment_tf_reads_at_import_is_honoured(tmp_path, monkeypatch):
    first = run_isolated(f"{_CHILDREN}:what_the_child_had", {}, str(tmp_path), name="warm")
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")  # Changed since the server started.
    changed = run_isolated(f"{_CHILDREN}:what_the_child_had", {}, str(tmp_path), name="new")
    assert changed.ok
    # From a server started anew, which imported TF with the new setting.
    assert changed.result["tensorflow_preloaded"] and changed.result["onednn_opts"] == "0"
    assert changed.result["server_pid"] != first.result["server_pid"]
    # Asked for by one call only: a fresh interpreter, which imports TF itself.
    assert not warm_children.can_fork({"TF_ENABLE_ONEDNN_OPTS": "1"})
    cold = run_isolated(
        f"{_CHILDREN}:what_the_child_had",
        {},
        str(tmp_path),
        name="cold",
        env={"TF_ENABLE_ONEDNN_OPTS": "1"},
    )
    assert not cold.result["tensorflow_preloaded"] and cold.result["onednn_opts"] == "1"


def test_an_aborting_forked_child_is_a_signal_failure_and_the_server_lives_on(tmp_path):
    crashed = run_isolated(f"{_CHILDREN}:abort", {}, str(tmp_path), name="crash")
    assert crashed.returncode == -6
    assert "killed by SIGABRT" in crashed.failure("the conversion")
    after = run_isolated(f"{_CHILDREN}:what_the_child_had", {}, str(tmp_path), name="after")
    assert after.ok and after.result["tensorflow_preloaded"]
    assert sorted(os.listdir(tmp_path)) == [
        "after_request.json",
        "after_result.json",
        "crash_request.json",
    ]


def test_a_forked_child_gets_its_own_children_from_the_same_server_and_reports_their_peak(
    tmp_path,
):
    outer = run_isolated(
        f"{_CHILDREN}:asks_for_a_child_of_its_own",
        {"workdir": str(tmp_path / "nested")},
        str(tmp_path),
        name="outer",
    )
    assert outer.ok, outer.failure("the outer child")
    nested = outer.result["nested"]
    # Forked by the server that forked the outer child: no second TensorFlow import.
    assert nested["tensorflow_preloaded"]
    assert nested["server_pid"] == outer.result["server_pid"]
    assert nested["pid"] != outer.result["pid"]
    # The outer child reports the larger peak of its own children as its peak: a
    # producer's record must show what its converter held.
    assert outer.result["nested_peak_rss_bytes"] > 400 << 20
    assert outer.peak_rss_bytes >= outer.result["nested_peak_rss_bytes"]
