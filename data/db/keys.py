"""The key of an encrypted studio file: where it comes from, where it is kept, how it is written.

A key is 256 random bits, used raw (``PRAGMA key = "x'...'"``: about 0.5 ms per connection,
where a passphrase costs 240-350 ms of PBKDF2). It comes from ``INKLINK_DB_KEY`` (64 hex
digits; servers, scripts, tests) or else from the OS keyring through ``keyring``, under the
service ``InkLinkOS`` and the database's identity: the 16-byte salt SQLCipher keeps in the
clear at the start of the file, which is random per database, survives renaming or moving
the file and ``PRAGMA rekey``, and is given to the database's backups too. The key is never
logged: ``DatabaseKey`` has no ``repr`` that shows it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from data.db.errors import ADVICE_KEY, DatabaseKeyError
from data.migration.raw_sqlite import HEADER_SIZE, SQLITE_MAGIC, read_header

log = logging.getLogger(__name__)

KEY_ENV = "INKLINK_DB_KEY"
# "on" or "off": whether a database created from now on is encrypted (see new_database_encrypted).
ENCRYPTION_ENV = "INKLINK_DB_ENCRYPTION"
KEYRING_SERVICE = "InkLinkOS"
KEY_BYTES = 32
SALT_BYTES = 16
# SQLCipher's smallest page: an encrypted file is a whole number of pages.
_MIN_PAGE = 512

# Crockford's base32: no I, L, O or U, so what is written down reads back unambiguously.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_READ_AS = {"O": "0", "I": "1", "L": "1"}
# A recovery key is the key and three bytes of its SHA-256 (a typo is caught, not tried):
# 35 bytes, exactly 56 characters, written as 14 groups of 4.
_CHECK_BYTES = 3
_GROUP = 4


class DatabaseKey:
    """256 raw bits. ``repr()`` and ``str()`` never show them.

    (A plain class: this module is imported at every app start, where a dataclass costs.)
    """

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        if len(raw) != KEY_BYTES:
            raise ValueError("a database key is 32 bytes")
        self.raw = raw

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DatabaseKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return "DatabaseKey(hidden)"

    __str__ = __repr__

    def pragma(self, salt: bytes | None = None) -> str:
        """The value of ``PRAGMA key``: the raw key, and for a new file the salt it gets."""
        return f"x'{self.raw.hex()}{salt.hex() if salt else ''}'"

    def hex(self) -> str:
        return self.raw.hex()

    def recovery_key(self) -> str:
        """The key as a person writes it down: 14 groups of 4 letters and digits."""
        import hashlib

        payload = self.raw + hashlib.sha256(self.raw).digest()[:_CHECK_BYTES]
        number = int.from_bytes(payload, "big")
        chars = []
        for _ in range(len(payload) * 8 // 5):
            chars.append(_ALPHABET[number & 31])
            number >>= 5
        text = "".join(reversed(chars))
        return "-".join(text[i : i + _GROUP] for i in range(0, len(text), _GROUP))


def new_key() -> DatabaseKey:
    import secrets

    return DatabaseKey(secrets.token_bytes(KEY_BYTES))


def new_salt() -> bytes:
    import secrets

    return secrets.token_bytes(SALT_BYTES)


def parse_hex_key(text: str) -> DatabaseKey | None:
    """64 hex digits, or None (the text is never echoed back: it may be a near-miss key)."""
    text = text.strip()
    if len(text) != KEY_BYTES * 2:
        return None
    try:
        return DatabaseKey(bytes.fromhex(text))
    except ValueError:
        return None


def parse_recovery_key(text: str) -> DatabaseKey | None:
    """A recovery key as written down (any case, spaces or dashes anywhere), or None when
    it is not one (a wrong character or a typo fails its check)."""
    cleaned = "".join(_READ_AS.get(c, c) for c in text.upper() if c not in " -\t\r\n")
    size = KEY_BYTES + _CHECK_BYTES
    if len(cleaned) != size * 8 // 5 or any(c not in _ALPHABET for c in cleaned):
        return None
    number = 0
    for char in cleaned:
        number = number << 5 | _ALPHABET.index(char)
    payload = number.to_bytes(size, "big")
    raw, check = payload[:KEY_BYTES], payload[KEY_BYTES:]
    import hashlib

    if hashlib.sha256(raw).digest()[:_CHECK_BYTES] != check:
        return None
    return DatabaseKey(raw)


def parse_any_key(text: str) -> DatabaseKey | None:
    """A recovery key, or the key's 64 hex digits."""
    return parse_hex_key(text) or parse_recovery_key(text)


# --- what kind of file -----------------------------------------------------------------------


def looks_encrypted(path: Path | str) -> bool:
    """A file SQLCipher may have written: not empty, whole pages, no plain SQLite header.

    Only a guess from outside (a wrong key and a file that is no database read alike);
    the key decides. A plain SQLite file is never taken for an encrypted one.
    """
    try:
        size = os.stat(path).st_size
        header = read_header(path, HEADER_SIZE)
    except OSError:
        return False
    return header_looks_encrypted(header, size)


def header_looks_encrypted(header: bytes, size: int) -> bool:
    """``looks_encrypted`` from a header and a size already read (no second open)."""
    return size >= _MIN_PAGE and size % _MIN_PAGE == 0 and not header.startswith(SQLITE_MAGIC)


def salt_of(path: Path | str) -> bytes:
    """The database's identity: the salt SQLCipher keeps in the clear (raises OSError)."""
    return read_header(path, SALT_BYTES)


def keyring_user(salt: bytes, *, pending: bool = False) -> str:
    """The keyring's user name for a database; ``pending`` names the entry a key change
    writes first (see ``data.migration.encryption.rekey_database``)."""
    return f"database {salt.hex()}{' next' if pending else ''}"


# --- where the key is kept -------------------------------------------------------------------


def key_from_environment(display: str) -> DatabaseKey | None:
    """``INKLINK_DB_KEY`` when set; a malformed one is refused (its value is never shown)."""
    raw = os.environ.get(KEY_ENV)
    if raw is None or not raw.strip():
        return None
    key = parse_hex_key(raw)
    if key is None:
        raise DatabaseKeyError(
            display,
            f"{KEY_ENV} is set but is not a key of 64 hex digits",
            f"Set {KEY_ENV} to the database's key (64 hex digits), or unset it to use the key "
            "kept in this computer's keyring. The file was not changed.",
        )
    return key


class KeyringUnavailableError(Exception):
    """The OS keyring cannot be reached (no backend, locked, refused)."""


def _keyring_get(user: str) -> str | None:
    try:
        import keyring

        return keyring.get_password(KEYRING_SERVICE, user)
    except Exception as exc:  # any backend's failure: no keyring, locked, D-Bus gone
        raise KeyringUnavailableError(f"{type(exc).__name__}: {exc}") from exc


def keyring_key(salt: bytes, *, pending: bool = False) -> DatabaseKey | None:
    """The key kept in the OS keyring for the database with ``salt``.

    Raises KeyringUnavailableError when the keyring cannot be reached."""
    stored = _keyring_get(keyring_user(salt, pending=pending))
    return None if stored is None else parse_hex_key(stored)


def store_in_keyring(display: str, salt: bytes, key: DatabaseKey, *, pending: bool = False) -> None:
    """Keep ``key`` in the OS keyring, and read it back: a key is never trusted unread."""
    try:
        import keyring

        keyring.set_password(KEYRING_SERVICE, keyring_user(salt, pending=pending), key.hex())
        stored = keyring_key(salt, pending=pending)
    except Exception as exc:
        raise DatabaseKeyError(
            display,
            f"its key cannot be kept in this computer's keyring ({type(exc).__name__}: {exc})",
            f"Nothing was changed. Unlock or set up the keyring (on a server set {KEY_ENV}), "
            "then try again.",
        ) from exc
    if stored != key:
        raise DatabaseKeyError(
            display,
            "the keyring did not give back the key just stored in it",
            f"Nothing was changed. Check the keyring (on a server set {KEY_ENV}), then try again.",
        )


def forget_in_keyring(salt: bytes, *, pending: bool = False) -> None:
    """Remove the keyring entry of the database with ``salt``, if there is one."""
    try:
        import keyring

        keyring.delete_password(KEYRING_SERVICE, keyring_user(salt, pending=pending))
    except Exception as exc:  # absent already, or no keyring: nothing to remove
        log.info("no keyring entry removed for %s (%s)", keyring_user(salt), type(exc).__name__)


# Keys found in this process, by file and salt: a keyring look-up costs milliseconds, and a
# pool opens connections over and over. A rekey replaces the entry.
_found: dict[tuple[str, bytes], DatabaseKey] = {}


def remember(path: Path | str, salt: bytes, key: DatabaseKey) -> None:
    _found[(str(path), salt)] = key


def key_for(path: Path | str) -> DatabaseKey:
    """The key of the encrypted file at ``path``: ``INKLINK_DB_KEY``, else the keyring.

    Raises DatabaseKeyError naming the file and the way in (recovery key, support) when
    neither has it. Whether it opens the file is for the caller to find out.
    """
    display = str(path)
    key = key_from_environment(display)
    if key is not None:
        return key  # the keyring is not touched at all
    try:
        salt = salt_of(path)
    except OSError as exc:
        raise DatabaseKeyError(
            display, f"its identity cannot be read ({exc.strerror})", ADVICE_KEY
        ) from exc
    cached = _found.get((display, salt))
    if cached is not None:
        return cached
    try:
        key = keyring_key(salt)
    except KeyringUnavailableError as exc:
        raise DatabaseKeyError(
            display,
            "it looks encrypted (it has no plain SQLite header), and this computer's keyring "
            f"cannot be reached to get its key ({exc})",
            ADVICE_KEY,
        ) from exc
    if key is None:
        raise DatabaseKeyError(
            display,
            "it is encrypted (or is not a database at all), and its key is not in this "
            f"computer's keyring and {KEY_ENV} is not set",
            ADVICE_KEY,
        )
    remember(display, salt, key)
    return key


def pending_key(path: Path | str) -> DatabaseKey | None:
    """The key a key change put in the keyring before changing the file, if one is there
    (a change interrupted after the file took the new key, before the keyring did)."""
    if os.environ.get(KEY_ENV, "").strip():
        return None
    try:
        return keyring_key(salt_of(path), pending=True)
    except (OSError, KeyringUnavailableError):
        return None


def promote_pending(path: Path | str, key: DatabaseKey) -> None:
    """The pending key opened the file: it becomes the database's key in the keyring."""
    display = str(path)
    salt = salt_of(path)
    store_in_keyring(display, salt, key)
    forget_in_keyring(salt, pending=True)
    remember(display, salt, key)
    log.warning("%s: a key change had not reached the keyring; it has now", display)


def new_database_encrypted(default: bool) -> bool:
    """Whether a database created now is encrypted.

    ``INKLINK_DB_ENCRYPTION=on|off`` decides; else a set ``INKLINK_DB_KEY`` means yes; else
    ``default`` (the caller's: yes for a studio's file in the per-user folder). A value that
    is neither on nor off is taken as on: a typo must not leave client records readable.
    """
    raw = os.environ.get(ENCRYPTION_ENV, "").strip().lower()
    if raw in ("on", "1", "yes", "true"):
        return True
    if raw in ("off", "0", "no", "false"):
        return False
    if raw:
        log.warning("%s=%r is neither on nor off: new databases are encrypted", ENCRYPTION_ENV, raw)
        return True
    if os.environ.get(KEY_ENV, "").strip():
        return True
    return default
