"""Where PyInstaller finds the data layer's hook (the ``pyinstaller40`` entry point)."""

from __future__ import annotations

from pathlib import Path


def get_hook_dirs() -> list[str]:
    """This folder: ``hook-data.py`` bundles the migrations and what they import."""
    return [str(Path(__file__).resolve().parent)]
