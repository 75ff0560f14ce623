"""``python -m data.db encrypt|rekey|decrypt|unlock``: the file's encryption, from a terminal.

``encrypt`` and ``rekey`` never ask anything (a deploy script or a support call runs them):
they print the recovery key once and exit 0. ``decrypt`` makes a plain copy for support; it
replaces the database only with ``--in-place`` and a confirmation (typed, or ``--yes``).
``unlock`` reads a recovery key (from the terminal, hidden, or from standard input) and puts
the key back in this computer's keyring. Each is a subcommand of ``python -m data.db``
(``data/db/__main__.py``): a refusal is a ``DataLayerError``, printed once there, exit 2;
nothing was changed then.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from data.db.keys import KEY_ENV
from data.db.session import DB_PATH

if TYPE_CHECKING:
    from data.migration.encryption import KeyChange

CONFIRM_WORD = "DECRYPT"


def recovery_block(recovery_key: str) -> str:
    groups = recovery_key.split("-")
    lines = ["-".join(groups[i : i + 7]) for i in range(0, len(groups), 7)]
    return (
        "\nRecovery key (shown only now: write it down on paper and keep it away from this "
        "computer;\nit opens the database if this computer's keyring loses its key):\n\n"
        + "\n".join(f"    {line}" for line in lines)
        + "\n"
    )


def _announce(change: KeyChange) -> None:
    if change.new_key_hex is not None:
        print(f"The old key came from {KEY_ENV}: set it to the new key once this finishes:")
        print(f"    {change.new_key_hex}")
    if change.recovery_key is not None:
        print(recovery_block(change.recovery_key), flush=True)


def _report(db_path: Path, change: KeyChange) -> None:
    print(f"Database: {db_path}\n{change.action.capitalize()}.")
    if change.verified:
        rows = sum(change.verified.values())
        print(f"Verified before replacing it: {len(change.verified)} tables, {rows} rows.")
    for removed in change.removed:
        print(f"Removed (zeroed first), no longer needed unencrypted: {removed}")
    if change.backup is not None:
        print(f"Backed up, encrypted with the new key and verified: {change.backup}")
    if change.note:
        print(change.note)
    if change.key_kept_in == "environment":
        print(f"The key is {KEY_ENV}'s; the keyring was not used. Keep it safe.")
    else:
        print("The key is kept in this computer's keyring.")


def encrypt(_args: argparse.Namespace) -> int:
    """Encrypt the database in place, verified, unattended; the recovery key is shown once."""
    from data.migration import encryption

    db_path = Path(DB_PATH)
    change = encryption.encrypt_database(db_path)
    _report(db_path, change)
    if change.recovery_key is not None:
        print(recovery_block(change.recovery_key))
    return 0


def rekey(_args: argparse.Namespace) -> int:
    """Give the encrypted database a new key (shown before the file changes)."""
    from data.migration import encryption

    db_path = Path(DB_PATH)
    # Shown before the file changes: an interruption never leaves a key nobody saw.
    change = encryption.rekey_database(db_path, announce=_announce)
    _report(db_path, change)
    return 0


def decrypt(args: argparse.Namespace) -> int:
    """A plain, verified copy for support; ``--in-place`` replaces the database (asks first).

    Returns 2 when ``--in-place`` is not confirmed (nothing changed).
    """
    from data.migration import encryption

    db_path = Path(DB_PATH)
    if not args.in_place:
        copy = encryption.decrypt_copy(db_path, args.output)
        print(f"Database: {db_path}\nA plain copy, verified, for support: {copy}")
        print("It is readable by anyone who gets it: delete it once support is done.")
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            print(
                "decrypt --in-place replaces the encrypted database with a readable "
                "one: confirm with --yes. Nothing was changed.",
                file=sys.stderr,
            )
            return 2
        answer = input(f"Replace {db_path} with an unencrypted copy? Type {CONFIRM_WORD}: ")
        if answer.strip() != CONFIRM_WORD:
            print("Nothing was changed.", file=sys.stderr)
            return 2
    encryption.decrypt_in_place(db_path)
    print(f"Database: {db_path}\nIt is no longer encrypted.")
    return 0


def unlock(_args: argparse.Namespace) -> int:
    """Read a recovery key (hidden on a terminal, else one line of standard input) and put
    the key back in this computer's keyring once it is proven to open the database."""
    from data.migration import encryption

    db_path = Path(DB_PATH)
    tty = sys.stdin.isatty()
    text = getpass.getpass("Recovery key: ") if tty else sys.stdin.readline()
    encryption.unlock(db_path, text)
    print(f"Database: {db_path}\nThe recovery key opens it; the keyring keeps its key again.")
    return 0
