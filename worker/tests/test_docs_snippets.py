"""The shell and Python snippets of README.md and docs/*.md: each one is run here, against
a real gearmand and a worker serving examples/jobs, or is marked as not runnable with the
reason on the line right before its fence::

    <!-- norun: provisions the hosts of your inventory -->
    ```sh
    ansible-playbook -i inventory site.yml
    ```

Fences tagged sh, bash, shell, console, python or py are snippets; untagged fences are
output or diagrams and are not run. Shell snippets run under ``bash -e`` with the
package's ``gearjob`` first on PATH and ``$GEARJOB_SERVERS`` naming the test's gearmand,
in a directory holding ``jobs.jsonl`` (two hello-world jobs). A ``# prints: TEXT`` comment
on a line must be matched by TEXT in the output. (docs/testing.md describes the convention.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import subprocess_env

pytest_plugins = ["daemon_fixtures"]

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"sh", "bash", "shell", "console"}
PYTHON = {"python", "py"}
NORUN = re.compile(r"^\s*<!--\s*norun:\s*(?P<reason>.*?)\s*-->\s*$")
JOBS = {
    "my_module_hello_world": "my_module.jobs:hello_world",
    "my_module_slow": "my_module.jobs:slow",
    "my_module_fail": "my_module.jobs:fail",
    "my_module_reverse": "my_module.jobs:reverse",
}


@dataclass(frozen=True)
class Snippet:
    page: str
    line: int
    language: str
    code: str
    norun: str | None  # the reason, when marked not runnable

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"


def snippets() -> list[Snippet]:
    found = []
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        index = 0
        while index < len(lines):
            fence = re.match(r"^\s*(`{3,})(\S*)", lines[index])
            if not fence:
                index += 1
                continue
            end = index + 1
            while end < len(lines) and not lines[end].strip().startswith(fence.group(1)):
                end += 1
            language = fence.group(2).lower()
            if language in SHELL | PYTHON:
                marker = NORUN.match(lines[index - 1]) if index else None
                found.append(
                    Snippet(
                        str(page.relative_to(ROOT)),
                        index + 1,
                        language,
                        "\n".join(lines[index + 1 : end]) + "\n",
                        marker.group("reason") if marker else None,
                    )
                )
            index = end + 1
    return found


RUNNABLE = [s for s in snippets() if s.norun is None]


def test_every_snippet_is_run_or_marked_with_a_reason() -> None:
    assert len(snippets()) >= 10
    for snippet in snippets():
        if snippet.norun is not None:
            assert len(snippet.norun) >= 10, f"{snippet.name}: say why it cannot run here"
    # a norun marker must sit right before a snippet's fence
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines[:-1], 1):
            if NORUN.match(line):
                assert re.match(r"^\s*```", lines[number]), f"{page.name}:{number}: no fence after"


@pytest.fixture
def snippet_env(gearmand, start_worker, tmp_path: Path) -> Iterator[dict[str, Any]]:
    env = subprocess_env(PYTHONPATH=str(ROOT / "examples/jobs"))
    start_worker(gearmand.address, jobs=JOBS, env=env)
    env["GEARJOB_SERVERS"] = str(gearmand.address)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["GEARJOB_CONFIG"] = str(tmp_path / "no-client.toml")
    (tmp_path / "no-client.toml").write_text("")
    (tmp_path / "jobs.jsonl").write_text(
        '{"job_name": "my_module_hello_world", "args": ["a"]}\n'
        '{"job_name": "my_module_hello_world", "args": ["b"]}\n'
    )
    yield {"env": env, "cwd": tmp_path}


@pytest.mark.parametrize("snippet", RUNNABLE, ids=[s.name for s in RUNNABLE])
def test_snippet_runs(snippet: Snippet, snippet_env: dict[str, Any]) -> None:
    if snippet.language in SHELL:
        argv = ["bash", "-e", "-o", "pipefail", "-c", snippet.code]
    else:
        argv = [sys.executable, "-c", snippet.code]
    run = subprocess.run(
        argv, capture_output=True, text=True, timeout=120, check=False, **snippet_env
    )
    shown = f"{snippet.name} exit {run.returncode}\n{snippet.code}\n{run.stdout}\n{run.stderr}"
    assert run.returncode == 0, shown
    for expected in re.findall(r"#\s*prints:\s*(.+?)\s*$", snippet.code, re.MULTILINE):
        assert expected in run.stdout, f"{expected!r} not printed\n{shown}"


def test_relative_links_point_to_existing_files_and_headings() -> None:
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http:, https:, mailto:
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.name}: link to {target} (no such file)"
            if anchor and linked.suffix == ".md":
                headings = {
                    re.sub(r"[^\w -]", "", h.strip().lower()).replace(" ", "-")
                    for h in re.findall(r"^#+ (.*)$", linked.read_text(encoding="utf-8"), re.M)
                }
                assert anchor in headings, f"{page.name}: link to {target} (no such heading)"
