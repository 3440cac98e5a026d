#!/usr/bin/env python3
"""Build wheels of local Python projects on the Ansible controller, with a cache.

    build_wheels.py --cache DIR PATH [PATH ...]

Each PATH is a project directory or a wheel file (*.whl, passed through as it is).

For each project directory: hash its source files (skipping build output, caches and VCS
data) and reuse the wheels cached under DIR for that hash; otherwise copy the sources to a
temporary directory and run `pip wheel --no-deps` there (the tree itself is left untouched).
SOURCE_DATE_EPOCH is fixed, so the same sources always give the same wheel bytes and a
copy to the hosts reports "changed" only when the code changed.

Prints a JSON object: {"wheels": [paths...], "built": [project dirs built this time],
"digest": sha256 of the wheels' names and bytes}. The digest names what a host should
have installed: the roles keep it in the virtualenv and skip pip while it is the same.
Exit 1 with pip's output on stderr when a build fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SKIP_DIRS = {
    ".git",
    ".hg",
    ".svn",
    ".tox",
    ".nox",
    ".venv",
    "venv",
    "build",
    "dist",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
}
SKIP_SUFFIXES = (".pyc", ".pyo", ".egg-info")
EPOCH = "315532800"  # 1980-01-01, the earliest date a zip file can hold


def source_files(project: Path) -> list[Path]:
    files: list[Path] = []
    for root, dirs, names in os.walk(project):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(SKIP_SUFFIXES))
        files.extend(Path(root, n) for n in sorted(names) if not n.endswith(SKIP_SUFFIXES))
    return files


def fingerprint(project: Path, files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        rel = path.relative_to(project).as_posix()
        digest.update(rel.encode() + b"\0")
        digest.update(f"{path.stat().st_mode & 0o111:o}".encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def build(project: Path, files: list[Path], out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="gearjob-build.") as tmp:
        src = Path(tmp, "src")
        for path in files:
            dest = src / path.relative_to(project)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        staging = Path(tmp, "wheels")
        env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--quiet",
                "--wheel-dir",
                str(staging),
                str(src),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            sys.stderr.write(result.stdout + result.stderr)
            raise SystemExit(
                f"build_wheels.py: pip wheel failed for {project} (exit {result.returncode})"
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
        for wheel in staging.glob("*.whl"):
            shutil.move(str(wheel), partial / wheel.name)
        try:
            partial.rename(out)
        except OSError:  # another run finished the same build first
            shutil.rmtree(partial, ignore_errors=True)


def digest(wheels: list[str]) -> str:
    """The sha256 of the wheels' file names and contents, in order."""
    total = hashlib.sha256()
    for wheel in wheels:
        path = Path(wheel)
        total.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return total.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", required=True, help="directory of cached wheels")
    parser.add_argument("paths", nargs="+", help="project directories or wheel files")
    args = parser.parse_args()
    cache = Path(args.cache).expanduser()
    wheels: list[str] = []
    built: list[str] = []
    for name in args.paths:
        project = Path(name).expanduser().resolve()
        if not project.exists():
            raise SystemExit(
                f"build_wheels.py: {name} does not exist on the controller; check "
                "gearjob_worker_packages (relative paths are relative to the playbook's "
                "directory) and gearjob_worker_source_dir"
            )
        if project.is_file() and project.suffix == ".whl":
            wheels.append(str(project))
            continue
        if not (project / "pyproject.toml").is_file() and not (project / "setup.py").is_file():
            raise SystemExit(f"build_wheels.py: {project} has no pyproject.toml or setup.py")
        files = source_files(project)
        prefix = f"{project.name}-{hashlib.sha256(str(project).encode()).hexdigest()[:8]}-"
        out = cache / (prefix + fingerprint(project, files))
        if not any(out.glob("*.whl")):
            build(project, files, out)
            built.append(str(project))
            for old in cache.glob(prefix + "*"):  # wheels of earlier versions of these sources
                if old != out:
                    shutil.rmtree(old, ignore_errors=True)
        wheels.extend(str(p) for p in sorted(out.glob("*.whl")))
    print(json.dumps({"wheels": wheels, "built": built, "digest": digest(wheels)}))


if __name__ == "__main__":
    main()
