"""Owner-only files and folders: the modes the data layer creates, and tightens when wider.

A studio's database holds client details and payments: no other local account may read it,
whatever the umask. Files are created 0600 and folders 0700 (then chmod-ed, because the
umask masks the mode given to ``open`` and ``mkdir``); a file found wider is tightened and
logged. POSIX only: on Windows ``st_mode`` says nothing about access (NTFS ACLs decide, and
the per-user data folder's ACL already admits only its user), so nothing here runs there.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("data.db.file_modes")

OWNER_ONLY_FILE = 0o600
OWNER_ONLY_FOLDER = 0o700
# Group and other permission bits: none of them may be set on a file of the data layer.
SHARED_BITS = 0o077
ENFORCED = os.name == "posix"


def make_private_folder(folder: Path) -> None:
    """Make ``folder`` (and missing parents) when missing; the folder itself 0700.

    Only a folder this call creates is set to 0700: an existing one may be a folder the
    user chose and shares (``DB_PATH`` in a documents folder, a checkout's root). Raises
    OSError when it cannot be made.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir(mode=OWNER_ONLY_FOLDER)
    except FileExistsError:
        if not folder.is_dir():
            raise
        return
    if ENFORCED:
        # mkdir's mode is masked by the umask: 0700 & ~umask can lack the owner's own bits.
        os.chmod(folder, OWNER_ONLY_FOLDER)


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty and 0600 unless it exists; True when this call created it.

    SQLite creates a missing database with the umask's mode (0644 under the usual 022), and
    its ``-wal`` and ``-shm`` copy the database's mode: creating the file first, owner-only,
    makes all three owner-only. An empty file is a new database to SQLite.
    """
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OWNER_ONLY_FILE)
    except FileExistsError:
        return False
    try:
        if ENFORCED:
            os.fchmod(descriptor, OWNER_ONLY_FILE)  # the umask may have taken the owner's bits
    finally:
        os.close(descriptor)
    return True


def is_shared(mode: int, owner: int) -> bool:
    """A mode (from ``stat``) other accounts may use, on something this user could tighten."""
    return ENFORCED and bool(mode & SHARED_BITS) and owner == os.geteuid()


def tighten(paths: Iterable[Path]) -> list[Path]:
    """Take the group and other bits off each existing file or folder that has any; log each.

    Only what this user owns is changed (chmod of another user's file fails, and changing
    it would take access from that user); anything else found shared is logged as a warning.
    Returns the paths tightened.
    """
    changed: list[Path] = []
    if not ENFORCED:
        return changed
    for path in paths:
        try:
            found = os.stat(path)
        except OSError:
            continue
        mode = stat.S_IMODE(found.st_mode)
        if not mode & SHARED_BITS or not (
            stat.S_ISREG(found.st_mode) or stat.S_ISDIR(found.st_mode)
        ):
            continue
        if found.st_uid != os.geteuid():
            log.warning(
                "%s can be read by other users (mode %o) and belongs to another user: "
                "this user cannot make it owner-only",
                path,
                mode,
            )
            continue
        try:
            os.chmod(path, mode & ~SHARED_BITS)
        except OSError as exc:
            log.warning("%s can be read by other users (mode %o): %s", path, mode, exc)
            continue
        log.warning(
            "%s could be used by other users (mode %o): made owner-only (%o)",
            path,
            mode,
            mode & ~SHARED_BITS,
        )
        changed.append(path)
    return changed
