"""One version number for the Python package and the gearjob.ops Ansible collection."""

from __future__ import annotations

import re
from pathlib import Path

import gearjob

ROOT = Path(__file__).resolve().parents[2]


def _field(path: Path, pattern: str) -> str:
    match = re.search(pattern, path.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"no version in {path}"
    return match.group(1)


def test_package_and_collection_share_one_version() -> None:
    versions = {
        "gearjob.__version__": gearjob.__version__,
        "worker/pyproject.toml": _field(ROOT / "worker/pyproject.toml", r'^version = "([^"]+)"$'),
        "galaxy.yml": _field(ROOT / "galaxy.yml", r"^version: *(\S+)$"),
    }
    assert len(set(versions.values())) == 1, versions
    assert re.fullmatch(r"\d+\.\d+\.\d+", gearjob.__version__), "galaxy needs X.Y.Z"


def test_changelog_has_an_entry_for_the_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"\n## {gearjob.__version__}\n" in changelog


def test_docs_name_the_current_tarball() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    named = {
        (page.name, version)
        for page in pages
        for version in re.findall(r"gearjob-ops-(\d+\.\d+\.\d+)\.tar\.gz", page.read_text())
    }
    assert named, "the docs show no collection tarball"
    assert {v for _, v in named} == {gearjob.__version__}, named
