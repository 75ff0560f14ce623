"""A keyring for tests: entries in a JSON file named by ``INKLINK_TEST_KEYRING``.

Selected with ``PYTHON_KEYRING_BACKEND=tests.keyring_backend.FileKeyring`` (conftest sets it,
and child processes inherit it), so the app, the command line and the tests all see one
keyring per test. A headless Linux has no real one; ``keyrings.alt`` would keep secrets in a
plain file in the user's home, which no test may touch. With ``INKLINK_TEST_KEYRING`` unset or
empty the keyring is unreachable, as on a machine without one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import NoKeyringError, PasswordDeleteError

ENV = "INKLINK_TEST_KEYRING"


def _file() -> Path:
    name = os.environ.get(ENV, "")
    if not name:
        raise NoKeyringError(f"no keyring in this test ({ENV} is not set)")
    return Path(name)


def _entries() -> dict[str, str]:
    try:
        loaded = json.loads(_file().read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return {str(k): str(v) for k, v in loaded.items()}


def entries() -> dict[str, str]:
    """What the test keyring holds: ``"service/user"`` -> secret."""
    return _entries()


class FileKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def get_password(self, service: str, username: str) -> str | None:
        return _entries().get(f"{service}/{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        found = _entries()
        found[f"{service}/{username}"] = password
        _file().write_text(json.dumps(found), encoding="utf-8")

    def delete_password(self, service: str, username: str) -> None:
        found = _entries()
        if found.pop(f"{service}/{username}", None) is None:
            raise PasswordDeleteError("no such entry")
        _file().write_text(json.dumps(found), encoding="utf-8")
