"""A small studio's rows, written with plain SQL at the baseline schema (not the models)."""

from __future__ import annotations

from pathlib import Path

from tests.file_kind import connect
from tests.scratch import query

STAMP = "2026-03-01 10:00:00.000000"


def seed_baseline_rows(db_path: Path, clients: int = 20, payments_per_client: int = 5) -> None:
    """Clients, one session each and their payments, through a plain connection (keyed for
    an encrypted file, see tests/file_kind.py)."""
    connection = connect(db_path)
    try:
        with connection:
            for n in range(1, clients + 1):
                connection.execute(
                    "INSERT INTO clients (id, first_name, last_name, email, created_at, updated_at)"
                    " VALUES (?, ?, 'Client', ?, ?, ?)",
                    (n, f"C{n}", f"c{n}@example.com", STAMP, STAMP),
                )
                connection.execute(
                    "INSERT INTO tattoo_sessions (id, client_id, artist, starts_at, status,"
                    " price_cents, deposit_cents, created_at, updated_at)"
                    " VALUES (?, ?, 'Rui', ?, 'completed', 20000, 5000, ?, ?)",
                    (n, n, STAMP, STAMP, STAMP),
                )
                for p in range(payments_per_client):
                    connection.execute(
                        "INSERT INTO transactions (client_id, session_id, kind, method,"
                        " amount_cents, occurred_at, created_at)"
                        " VALUES (?, ?, 'payment', 'card', ?, ?, ?)",
                        (n, n, 1000 * (p + 1) + n, STAMP, STAMP),
                    )
    finally:
        connection.close()


def studio_invariants(db_path: Path, *, key: str | None = None) -> dict[str, object]:
    """What matters to a studio: counts, each client's total, every row tied to its client
    (an encrypted file read with ``key``, else with INKLINK_DB_KEY)."""
    return {
        "clients": query(db_path, "SELECT count(*) FROM clients", key=key),
        "sessions": query(db_path, "SELECT count(*) FROM tattoo_sessions", key=key),
        "transactions": query(db_path, "SELECT count(*) FROM transactions", key=key),
        "totals": query(
            db_path,
            "SELECT client_id, sum(amount_cents) FROM transactions GROUP BY client_id ORDER BY 1",
            key=key,
        ),
        "ties": query(
            db_path,
            "SELECT t.id, t.client_id, s.client_id FROM transactions t"
            " JOIN tattoo_sessions s ON s.id = t.session_id ORDER BY t.id",
            key=key,
        ),
    }
