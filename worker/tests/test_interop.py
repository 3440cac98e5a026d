"""Other Gearman clients against a gearjob worker subprocess: PHP's GearmanClient used the
way Islandora Job uses it, the C `gearman` tool, and gearjob's own client."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
from daemon_helpers import queued, wait_for

from gearjob.client import Client
from gearjob.errors import JobFailed

pytest_plugins = ["daemon_fixtures"]

PHP_CLIENT = r"""<?php
// What Islandora Job does: islandora_job_submit / _background / a batch of tasks.
function islandora_job_payload($job, $args) {
    $site = "http://example.org";
    return json_encode(["func" => $job, "args" => $args, "site" => $site, "uid" => 1]);
}
$port = (int)$argv[1];
$marker = $argv[2];
$client = new GearmanClient();
$client->addServer("127.0.0.1", $port);
$client->setTimeout(20000);

$normal = [];
$cases = [
    ["hello", ["Danny"]],
    ["each_type", ["dict"]],
    ["each_type", ["int"]],
    ["each_type", ["none"]],
    ["failing", ["boom"]],
    ["hello", ["D\u{00e4}nny \u{2603} \u{1d11e}"]],
    ["echo", ["a/b", ["nested" => true], 1.5]],
];
foreach ($cases as [$job, $args]) {
    $result = $client->doNormal($job, islandora_job_payload($job, $args));
    $normal[] = ["job" => $job, "result" => $result, "code" => $client->returnCode()];
}

$handle = $client->doBackground("touch", islandora_job_payload("touch", [$marker]));
$background = ["handle" => $handle, "code" => $client->returnCode()];

$tasks = [];
$client->setCompleteCallback(function ($task) use (&$tasks) {
    $tasks[$task->unique()] = ["ok" => true, "data" => $task->data()];
});
$client->setFailCallback(function ($task) use (&$tasks) {
    $tasks[$task->unique()] = ["ok" => false];
});
for ($i = 0; $i < 5; $i++) {
    $client->addTask("hello", islandora_job_payload("hello", ["n$i"]), null, "task-$i");
}
$client->addTask("failing", islandora_job_payload("failing", ["x"]), null, "task-fail");
$ran = $client->runTasks();

echo json_encode([
    "normal" => $normal,
    "background" => $background,
    "tasks" => $tasks,
    "ran" => $ran,
    "SUCCESS" => GEARMAN_SUCCESS,
    "WORK_FAIL" => GEARMAN_WORK_FAIL,
]);
"""


def run_php(tmp_path, code: str, *args: str) -> Any:
    """Run a PHP script; its stdout as JSON."""
    script = tmp_path / "client.php"
    script.write_text(code)
    done = subprocess.run(
        ["php", str(script), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def served(gearmand, start_worker):
    start_worker(gearmand, extra=["--job-timeout", "0.5"])
    return gearmand


needs_php = pytest.mark.skipif(
    shutil.which("php") is None
    or "gearman"
    not in subprocess.run(["php", "-m"], capture_output=True, text=True, check=False).stdout,
    reason="php-cli with the gearman extension is not installed",
)
needs_gearman_tool = pytest.mark.skipif(
    shutil.which("gearman") is None, reason="gearman-tools is not installed"
)


@needs_php
def test_php_client_the_islandora_job_way(served, tmp_path):
    marker = tmp_path / "background-ran"
    out = run_php(tmp_path, PHP_CLIENT, str(served.port), str(marker))
    ok, fail = out["SUCCESS"], out["WORK_FAIL"]
    normal = [(case["job"], case["result"], case["code"]) for case in out["normal"]]
    assert normal[0] == ("hello", "Hello Danny", ok)  # a string comes back as it is
    assert normal[1] == ("each_type", '{"a":1,"b":[true,null]}', ok)  # a dict as JSON text
    assert normal[2] == ("each_type", "42", ok)
    assert normal[3] == ("each_type", "", ok)
    assert normal[4][0] == "failing" and normal[4][2] == fail  # a raising job fails
    assert normal[5] == ("hello", "Hello Dänny ☃ 𝄞", ok)  # json_encode's \u escapes
    assert normal[6][2] == ok
    assert json.loads(normal[6][1]) == {"args": ["a/b", {"nested": True}, 1.5], "kwargs": {}}

    assert out["background"]["code"] == ok
    assert out["background"]["handle"].startswith("H:")
    wait_for(marker.exists, what="the background job to run")

    assert out["ran"] is True
    tasks = out["tasks"]
    assert {f"task-{i}": tasks[f"task-{i}"] for i in range(5)} == {
        f"task-{i}": {"ok": True, "data": f"Hello n{i}"} for i in range(5)
    }
    assert tasks["task-fail"] == {"ok": False}


def gearman_tool(port: int, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["gearman", "-h", "127.0.0.1", "-p", str(port), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@needs_gearman_tool
def test_c_gearman_tool_submits_to_a_gearjob_worker(served, tmp_path):
    done = gearman_tool(served.port, "-f", "hello", stdin='{"args":["Danny"]}\n')
    assert (done.returncode, done.stdout) == (0, "Hello Danny")
    done = gearman_tool(served.port, "-f", "each_type", stdin='{"args":["list"]}')
    assert (done.returncode, done.stdout) == (0, '[1,"two",null]')
    # a failing job, a non-JSON workload and a timed-out job end the tool (no hang)
    for function, workload in (
        ("failing", '{"args":["x"]}'),
        ("hello", "Danny"),
        ("slow", '{"args":[30]}'),
    ):
        done = gearman_tool(served.port, "-f", function, stdin=workload)
        assert done.returncode != 0, (function, done.stdout)
        assert "Job failed" in done.stdout + done.stderr, (function, done.stdout, done.stderr)
    marker = tmp_path / "ran"
    done = gearman_tool(served.port, "-b", "-f", "touch", stdin=json.dumps({"args": [str(marker)]}))
    assert done.returncode == 0
    wait_for(marker.exists, what="the background job to run")
    assert queued(served.address, "touch") == 0


def test_gearjob_client_gets_typed_results_and_exceptions(served):
    with Client([served.address], timeout=20) as client:
        assert client.submit("hello", "Danny") == "Hello Danny"
        assert client.submit("each_type", "dict") == {"a": 1, "b": [True, None]}
        assert client.submit("each_type", "none") is None
        assert client.submit("each_type", "str") == "text é ☃"
        assert client.submit("echo", "x", {"y": [1]}) == {"args": ["x", {"y": [1]}], "kwargs": {}}
        with pytest.raises(JobFailed) as info:
            client.submit("failing", "boom")
        assert (info.value.exc_type, info.value.message) == ("ValueError", "boom")
        with pytest.raises(JobFailed) as info:
            client.submit("slow", 30)
        assert info.value.exc_type == "gearjob.errors.JobTimeout"
        assert info.value.message == "job slow timed out after 0.5 s"
        results = client.run_batch([{"job_name": "hello", "args": [str(i)]} for i in range(10)])
        assert [r.value for r in results] == [f"Hello {i}" for i in range(10)]


# -- jobs that use gearjob.current_job(): progress, data chunks, warnings ------------------------

CONTEXT_JOBS = {
    "reporting": "context_jobs:reporting",
    "slow_progress": "context_jobs:slow_progress",
    "hello": "sample_jobs:hello_world",
}

PHP_CONTEXT_CLIENT = r"""<?php
function islandora_job_payload($job, $args) {
    $site = "http://example.org";
    return json_encode(["func" => $job, "args" => $args, "site" => $site, "uid" => 1]);
}
$client = new GearmanClient();
$client->addServer("127.0.0.1", (int)$argv[1]);
$client->setTimeout(20000);
$normal = $client->doNormal("reporting", islandora_job_payload("reporting", [2]));
$normal_code = $client->returnCode();
$plain = $client->doNormal("hello", islandora_job_payload("hello", ["Danny"]));
$events = [];
$client->setDataCallback(function ($task) use (&$events) { $events[] = ["data", $task->data()]; });
$client->setStatusCallback(function ($task) use (&$events) {
    $events[] = ["status", $task->taskNumerator(), $task->taskDenominator()];
});
$client->setWarningCallback(function ($task) use (&$events) {
    $events[] = ["warning", $task->data()];
});
$client->setCompleteCallback(function ($task) use (&$events) {
    $events[] = ["complete", $task->data()];
});
$client->addTask("reporting", islandora_job_payload("reporting", [2]), null, "t1");
$ran = $client->runTasks();
// a background job that reports progress: jobStatus() shows it
$handle = $client->doBackground("slow_progress", islandora_job_payload("slow_progress", [50, 0.1]));
$seen = [false, false, 0, 0];
for ($i = 0; $i < 200 && $seen[2] == 0; $i++) {
    usleep(50000);
    $seen = $client->jobStatus($handle);
}
echo json_encode(["normal" => $normal, "normal_ok" => $normal_code == GEARMAN_SUCCESS,
    "plain" => $plain, "events" => $events, "ran" => $ran, "status" => $seen]);
"""


@pytest.fixture
def context_served(gearmand, start_worker):
    start_worker(gearmand, jobs=CONTEXT_JOBS)
    return gearmand


@needs_php
def test_php_client_gets_chunks_then_the_result_from_a_job_that_streams(context_served, tmp_path):
    out = run_php(tmp_path, PHP_CONTEXT_CLIENT, str(context_served.port))
    # doNormal joins the WORK_DATA chunks and the result; a job without them is unchanged
    assert (out["normal"], out["normal_ok"]) == ("chunk1;final", True)
    assert out["plain"] == "Hello Danny"
    assert out["ran"] is True
    assert out["events"] == [
        ["status", 1, 2],
        ["status", 2, 2],
        ["data", "chunk1;"],
        ["warning", "careful"],
        ["complete", "final"],
    ]
    known, running, numerator, denominator = out["status"]
    assert (known, running, denominator) == (True, True, 50) and numerator >= 1


@needs_gearman_tool
def test_c_gearman_tool_prints_chunks_then_the_result(context_served):
    done = gearman_tool(context_served.port, "-f", "reporting", stdin='{"args":[2]}')
    # the chunks and the result, then (another stdout buffer) a line per WORK_STATUS:
    # a shell pipeline reading the tool's output sees those lines too
    assert (done.returncode, done.stdout) == (0, "chunk1;final50% Complete\n100% Complete\n")
    done = gearman_tool(context_served.port, "-f", "hello", stdin='{"args":["Danny"]}')
    assert (done.returncode, done.stdout) == (0, "Hello Danny")


def test_gearjob_client_returns_the_result_and_hands_chunks_to_on_data(context_served):
    events: list[tuple[str, object]] = []
    with Client([context_served.address], timeout=20) as client:
        value = client.submit(
            "reporting",
            2,
            on_data=lambda chunk: events.append(("data", chunk)),
            on_progress=lambda n, d: events.append(("status", (n, d))),
            on_warning=lambda text: events.append(("warning", text)),
        )
        assert value == "final"
        assert events == [
            ("status", (1, 2)),
            ("status", (2, 2)),
            ("data", b"chunk1;"),
            ("warning", "careful"),
        ]
        assert client.submit("reporting", 2) == "final"  # no callbacks: the events are dropped
