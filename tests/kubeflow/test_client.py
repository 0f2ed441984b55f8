"""submit and schedule through kfp.Client against the KFP REST API stand-in on 127.0.0.1."""

from __future__ import annotations

import json
import socket

import pytest
import yaml

from components.common.errors import UserInputError
from components.version import __version__
from pipelines import cli
from pipelines.kubeflow import client as kfp_client
from tests.kubeflow.kfp_api_standin import KfpApiStandIn

MODEL = "gs://team-bucket/models/digits/2"
EXAMPLES = "gs://team-bucket/examples/digits-eval-2"
RUN_ROOT = "s3://other-bucket/runs"


@pytest.fixture()
def api():
    with KfpApiStandIn() as standin:
        yield standin


def _uploaded_spec(api: KfpApiStandIn) -> dict:
    (upload,) = api.calls("POST", "/pipelines/upload")
    return list(yaml.safe_load_all(upload.files["uploadfile"]))


def _submit(api: KfpApiStandIn, package: str, *extra: str) -> int:
    return cli.main(["submit", "--host", api.url, "--package", package, *extra])


def test_submit_uploads_the_package_and_starts_a_run_with_params_and_root(api, gpu_package, capsys):
    code = _submit(
        api,
        gpu_package.path,
        "--model-uri",
        MODEL,
        "--param",
        f"examples_uri={EXAMPLES}",
        "--pipeline-root",
        RUN_ROOT,
        "--experiment",
        "nightly",
    )

    assert code == 0
    with open(gpu_package.path, "rb") as f:
        assert api.calls("POST", "/pipelines/upload")[0].files["uploadfile"] == f.read()
    pipeline_doc, platform_doc = _uploaded_spec(api)
    assert pipeline_doc == gpu_package.pipeline_spec
    assert platform_doc == gpu_package.platform_spec
    (upload,) = api.calls("POST", "/pipelines/upload")
    assert upload.query["name"] == ["inference-optimizer"]
    (experiment,) = api.calls("POST", "/experiments")
    assert experiment.json["display_name"] == "nightly"
    (run,) = api.calls("POST", "/runs")
    (version,) = api.versions[next(iter(api.pipelines))]
    assert run.json["runtime_config"] == {
        "parameters": {"model_uri": MODEL, "examples_uri": EXAMPLES},
        "pipeline_root": RUN_ROOT,
    }
    assert run.json["pipeline_version_reference"] == {
        "pipeline_id": version["pipeline_id"],
        "pipeline_version_id": version["pipeline_version_id"],
    }
    assert run.json["experiment_id"] == api.experiments[run.json["experiment_id"]]["experiment_id"]
    (run_id,) = api.runs
    assert f"{api.url}/#/runs/details/{run_id}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("states", "code", "line"),
    [
        (["PENDING", "RUNNING", "SUCCEEDED"], 0, "ended: SUCCEEDED."),
        (["RUNNING", "FAILED"], 4, "ended: FAILED."),
        (["RUNNING", "CANCELED"], 4, "ended: CANCELED."),
    ],
)
def test_submit_wait_prints_the_final_state_and_exits_with_it(
    api, gpu_package, capsys, states, code, line
):
    api.run_states = list(states)
    assert _submit(api, gpu_package.path, "--wait", "--poll-interval", "0.01") == code
    out = capsys.readouterr().out
    assert line in out
    for state in states:  # Every change of state is shown as it happens.
        assert f": {state}" in out


def test_submit_json_is_only_the_document_on_stdout(api, gpu_package, capsys):
    api.run_states = ["RUNNING", "FAILED"]
    code = _submit(api, gpu_package.path, "--json", "--wait", "--poll-interval", "0.01")
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    (run_id,) = api.runs
    assert code == 4 == document["exit_code"]
    assert (document["kind"], document["id"], document["final_state"]) == ("run", run_id, "FAILED")
    assert document["url"].endswith(f"/#/runs/details/{run_id}")
    assert "ended: FAILED." in captured.err


def test_submit_wait_gives_up_at_its_timeout_and_says_the_run_goes_on(api, gpu_package, capsys):
    api.run_states = ["RUNNING"] * 1000
    code = _submit(
        api, gpu_package.path, "--wait", "--wait-timeout", "0.3", "--poll-interval", "0.05"
    )
    assert code == 5
    assert "had not ended after 0.3 s; it goes on" in capsys.readouterr().err


def test_submit_without_root_uses_the_packages_default_root(api, gpu_package):
    assert _submit(api, gpu_package.path) == 0

    (run,) = api.calls("POST", "/runs")
    assert run.json["runtime_config"].get("pipeline_root") is None  # The spec's default applies.
    assert run.json["runtime_config"].get("parameters") in ({}, None)


def test_submitting_the_same_package_twice_reuses_its_uploaded_version(api, gpu_package):
    assert _submit(api, gpu_package.path) == 0
    assert _submit(api, gpu_package.path) == 0
    assert _submit(api, gpu_package.path) == 0

    (pipeline_id,) = api.pipelines
    # The first upload creates the pipeline and its first version; the second submit adds the
    # content-named version; the third finds that one and uploads nothing.
    assert len(api.calls("POST", "/pipelines/upload")) == 1
    assert len(api.calls("POST", "/pipelines/upload_version")) == 1
    second, third = [r.json["pipeline_version_reference"] for r in api.calls("POST", "/runs")[1:]]
    assert second == third
    assert api.versions[pipeline_id][1]["display_name"].startswith(f"{__version__}-")


def test_schedule_creates_a_recurring_run_with_cron_concurrency_and_no_catchup(
    api, gpu_package, capsys
):
    code = cli.main(
        [
            "schedule",
            "--host",
            api.url,
            "--package",
            gpu_package.path,
            "--cron",
            "0 0 3 * * *",
            "--max-concurrency",
            "2",
            "--no-catchup",
            "--model-uri",
            MODEL,
            "--pipeline-root",
            RUN_ROOT,
            "--name",
            "nightly digits",
        ]
    )

    assert code == 0
    (job,) = api.calls("POST", "/recurringruns")
    assert job.json["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"
    assert job.json["max_concurrency"] == 2
    assert job.json["no_catchup"] is True
    assert job.json["mode"] == "ENABLE"
    assert job.json["display_name"] == "nightly digits"
    assert job.json["runtime_config"] == {
        "parameters": {"model_uri": MODEL},
        "pipeline_root": RUN_ROOT,
    }
    assert job.json["pipeline_version_reference"]["pipeline_version_id"]
    pipeline_doc, _ = _uploaded_spec(api)
    assert pipeline_doc == gpu_package.pipeline_spec
    assert "recurringrun/details/" in capsys.readouterr().out


def test_token_is_sent_as_a_bearer_header(gpu_package, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n", encoding="utf-8")
    with KfpApiStandIn(required_token="s3cret") as api:
        code = _submit(api, gpu_package.path, "--token-file", str(token_file))

        assert code == 0
        assert {r.headers["authorization"] for r in api.requests} == {"Bearer s3cret"}


def test_a_refused_token_gives_a_clear_auth_message(gpu_package, capsys):
    with KfpApiStandIn(required_token="right") as api:
        code = _submit(api, gpu_package.path, "--token", "wrong")

    err = capsys.readouterr().err
    assert code == 1
    assert "refused the credentials" in err and "HTTP 401" in err and "--token" in err
    assert "Traceback" not in err
    assert len(api.requests) == 1  # One health check, no retries.


def test_an_unreachable_host_gives_a_clear_message(gpu_package, capsys):
    with socket.socket() as sock:  # A port nobody listens on.
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    code = cli.main(["submit", "--host", f"http://127.0.0.1:{port}", "--package", gpu_package.path])

    err = capsys.readouterr().err
    assert code == 1
    assert f"Cannot reach the Kubeflow Pipelines API at http://127.0.0.1:{port}" in err
    assert "--host" in err and "Traceback" not in err


def test_a_host_that_is_not_the_kfp_api_gives_a_not_found_message(api, gpu_package):
    connection = kfp_client.Connection(host=api.url + "/not-kfp")

    with pytest.raises(UserInputError, match="HTTP 404.*--host"):
        kfp_client.connect(connection)


def test_a_cron_the_server_rejects_gives_its_reason(api, gpu_package, capsys):
    code = cli.main(
        ["schedule", "--host", api.url, "--package", gpu_package.path, "--cron", "0 0 25 * * *"]
    )

    err = capsys.readouterr().err
    assert code == 1
    assert "rejected the request while creating the recurring run" in err
    assert "HTTP 400" in err and "out of range" in err


def test_a_five_field_cron_is_refused_before_any_request(api, gpu_package, capsys):
    code = cli.main(
        ["schedule", "--host", api.url, "--package", gpu_package.path, "--cron", "0 3 * * *"]
    )

    assert code == 1
    assert "Did you mean '0 0 3 * * *'?" in capsys.readouterr().err
    assert api.requests == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--param", "nope=1"], "Unknown pipeline parameter"),
        (["--param", "max_accuracy_drop=2"], "max_accuracy_drop is a fraction"),
        (["--param", "objective=fastest"], "objective must be one of"),
        (["--param", "time_budget_s=0"], "time_budget_s must be more than 0"),
        (["--param", "model_uri"], "not NAME=VALUE"),
        (["--model-uri", "a", "--param", "model_uri=b"], "Pass model_uri once"),
        (["--pipeline-root", "minio://mlpipeline/v2"], "not a gs:// or s3:// URI"),
    ],
)
def test_bad_run_options_are_refused_before_the_pipeline_is_uploaded(
    api, gpu_package, capsys, args, message
):
    code = _submit(api, gpu_package.path, *args)

    assert code == 1
    assert message in capsys.readouterr().err
    assert api.calls("POST", "/pipelines/upload") == []


@pytest.mark.parametrize("command", ["submit", "schedule"])
def test_an_unknown_parameter_to_an_unreachable_host_is_reported_as_the_parameter(
    gpu_package, capsys, command
):
    """Offline checks come before connecting: nothing listens on port 9 (discard)."""
    extra = ["--cron", "0 0 3 * * *"] if command == "schedule" else []
    code = cli.main(
        [command, "--host", "http://127.0.0.1:9", "--package", gpu_package.path]
        + ["--param", "nonexistent=1", *extra]
    )

    err = capsys.readouterr().err
    assert code == 1
    assert "Unknown pipeline parameter(s) ['nonexistent']" in err
    assert "connect" not in err.lower()


def test_a_package_without_root_needs_one_at_submit_time(api, default_package, capsys):
    code = _submit(api, default_package.path)

    assert code == 1
    assert "no default pipeline root" in capsys.readouterr().err
    assert api.calls("POST", "/runs") == []


def test_a_missing_package_is_refused_before_connecting(api, tmp_path, capsys):
    code = _submit(api, str(tmp_path / "missing.yaml"))

    assert code == 1
    assert "does not exist" in capsys.readouterr().err
    assert api.requests == []


def test_no_host_and_no_in_cluster_is_refused(gpu_package, monkeypatch, capsys):
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)

    code = cli.main(["submit", "--package", gpu_package.path])

    assert code == 1
    assert "Pass --host URL" in capsys.readouterr().err


def test_in_cluster_outside_a_pod_is_refused(gpu_package, capsys):
    code = cli.main(["submit", "--in-cluster", "--package", gpu_package.path])

    assert code == 1
    assert "--in-cluster works only inside a pod" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("cron", "ok"),
    [
        ("0 0 3 * * *", True),
        ("0 */15 * * * 1-5", True),
        ("@daily", True),
        ("0 3 * * *", False),
        ("every day", False),
        ("", False),
    ],
)
def test_check_cron_accepts_six_field_crons_and_descriptors(cron, ok):
    if ok:
        assert kfp_client.check_cron(cron) == cron
    else:
        with pytest.raises(UserInputError, match="(?i)cron"):
            kfp_client.check_cron(cron)


def test_max_concurrency_outside_the_apis_range_is_refused():
    with pytest.raises(UserInputError, match="between 1 and 10"):
        kfp_client.check_max_concurrency(11)
