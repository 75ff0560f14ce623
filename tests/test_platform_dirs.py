"""The per-user data directory on Windows, macOS and Linux: platformdirs, with pinned arguments.

platformdirs picks its class by ``sys.platform``; each class can be built anywhere, so the
shapes of all three are checked on any machine. Off Windows, platformdirs 4.14 still picks
its ctypes resolver for the Windows class (ctypes imports everywhere) and that raises, so the
test feeds the roaming folder through platformdirs' own ``WIN_PD_OVERRIDE_APPDATA``, which is
read first on every platform. On Windows the real folder is used.
"""

from __future__ import annotations

import io
import ntpath
import os
import sys
import tokenize
from pathlib import Path

import platformdirs
import pytest
from platformdirs.macos import MacOS
from platformdirs.unix import Unix
from platformdirs.windows import Windows

from data.db import session
from data.db.session import DB_FILENAME, USER_DATA_DIR_ARGS, user_data_dir
from tests.conftest import PROJECT_ROOT


def test_the_arguments_are_pinned() -> None:
    # appauthor=False: no vendor folder (None would give %APPDATA%\InkLinkOS\InkLinkOS);
    # roaming=True: %APPDATA% (Roaming), where Windows keeps a user's documents-like data.
    assert USER_DATA_DIR_ARGS == {"appname": "InkLinkOS", "appauthor": False, "roaming": True}


def test_the_module_asks_platformdirs_with_those_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("APPDATA", str(tmp_path / "Roaming"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_data_dir() == Path(platformdirs.PlatformDirs(**USER_DATA_DIR_ARGS).user_data_dir)
    assert not user_data_dir().exists(), "asking for the folder must not create it"


def test_windows_is_appdata_roaming_inklinkos(monkeypatch: pytest.MonkeyPatch) -> None:
    if sys.platform == "win32":
        monkeypatch.delenv("WIN_PD_OVERRIDE_APPDATA", raising=False)
        monkeypatch.delenv("WIN_PD_OVERRIDE_LOCAL_APPDATA", raising=False)
        appdata = os.path.normpath(os.environ["APPDATA"])
    else:
        appdata = r"C:\Users\desk\AppData\Roaming"
        monkeypatch.setenv("WIN_PD_OVERRIDE_APPDATA", appdata)
        # Were roaming=False used, this is the folder that would show up instead.
        monkeypatch.setenv("WIN_PD_OVERRIDE_LOCAL_APPDATA", r"C:\Users\desk\AppData\Local")

    folder = Windows(**USER_DATA_DIR_ARGS).user_data_dir
    assert folder == os.path.join(appdata, "InkLinkOS")
    assert os.path.join(folder, DB_FILENAME) == os.path.join(appdata, "InkLinkOS", "inklink.db")
    if sys.platform != "win32":
        # What a Windows machine shows: %APPDATA%\InkLinkOS\inklink.db, no vendor level.
        shown = ntpath.join(ntpath.normpath(folder.replace("/", "\\")), DB_FILENAME)
        assert shown == r"C:\Users\desk\AppData\Roaming\InkLinkOS\inklink.db"


@pytest.mark.skipif(sys.platform == "win32", reason="expands ~ through HOME")
def test_macos_is_application_support_inklinkos(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    # platformdirs lets an explicit XDG_DATA_HOME win on macOS too; a Mac normally has none.
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    folder = MacOS(**USER_DATA_DIR_ARGS).user_data_dir
    assert folder == str(tmp_path / "Library" / "Application Support" / "InkLinkOS")


@pytest.mark.skipif(sys.platform == "win32", reason="expands ~ through HOME")
def test_linux_is_xdg_data_home_inklinkos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert Unix(**USER_DATA_DIR_ARGS).user_data_dir == str(tmp_path / "xdg" / "InkLinkOS")
    monkeypatch.delenv("XDG_DATA_HOME")
    expected = tmp_path / "home" / ".local" / "share" / "InkLinkOS"
    assert Unix(**USER_DATA_DIR_ARGS).user_data_dir == str(expected)


# Fragments of a hand-built per-user path; platformdirs is the one place that knows them.
HAND_BUILT = ("APPDATA", "Application Support", ".local/share", "XDG_DATA_HOME", "AppData")


def _string_literals(path: Path) -> list[tuple[int, str]]:
    source = path.read_text(encoding="utf-8")
    return [
        (token.start[0], token.string)
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.STRING  # an f-string is one token before 3.12
    ]


def test_no_code_hand_builds_a_per_user_path() -> None:
    sources = [
        p
        for folder in ("data", "migrations", "examples")
        for p in (PROJECT_ROOT / folder).rglob("*.py")
    ]
    assert Path(session.__file__) in sources
    found = [
        f"{path.relative_to(PROJECT_ROOT)}:{line}: {text}"
        for path in sources
        for line, text in _string_literals(path)
        if any(fragment in text for fragment in HAND_BUILT)
    ]
    assert found == [], "per-user paths must come from platformdirs:\n" + "\n".join(found)
