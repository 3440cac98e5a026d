"""Start-up cost: what importing gearjob and its worker loads (each check in a fresh
interpreter)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import gearjob

HEAVY = ("ssl", "hashlib", "tomllib", "gearjob.client", "gearjob.config")


def loaded_after(code: str) -> set[str]:
    """The modules of HEAVY that are loaded after running `code` in a new interpreter."""
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


def test_import_gearjob_loads_neither_the_client_nor_openssl() -> None:
    assert loaded_after("import gearjob, gearjob.errors") == set()


def test_the_worker_daemon_does_not_load_openssl_or_the_client() -> None:
    loaded = loaded_after("import gearjob.cli, gearjob.worker, gearjob.registry")
    assert loaded == {"gearjob.config"}


def test_names_are_imported_on_first_use() -> None:
    loaded = loaded_after("from gearjob import Client, submit, JobFailed, ServerAddress")
    assert {"gearjob.client", "gearjob.config"} <= loaded
    assert "ssl" not in loaded and "hashlib" not in loaded


def test_lazy_names_are_the_real_objects() -> None:
    from gearjob import client, config, context, errors

    for name in gearjob.__all__:
        value = getattr(gearjob, name)
        home = next(m for m in (client, config, context, errors, gearjob) if hasattr(m, name))
        assert value is getattr(home, name), name
    assert "Client" in dir(gearjob)
    with pytest.raises(AttributeError, match="module 'gearjob' has no attribute 'nope'"):
        gearjob.nope  # type: ignore[attr-defined]  # noqa: B018
