"""A synthetic studio (clients, sessions, transactions) and the typical queries run on it."""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from data.models import TattooSession, Transaction, TransactionKind

ARTISTS = ("Ada", "Bo", "Cy", "Dee", "Eli", "Fox", "Gus", "Hal")
FIRST_DAY = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
DAYS = 3 * 365
# The query parameters: the day and the week sit in the middle of the three years.
QUERY_CLIENT_ID = 42
QUERY_DAY = dt.datetime(2025, 6, 11, tzinfo=dt.UTC)
QUERY_ARTIST = "Cy"
QUERY_WEEK = dt.datetime(2025, 6, 9, tzinfo=dt.UTC)

_STAMP = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy's SQLite DATETIME stores a value


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).replace(tzinfo=None).strftime(_STAMP)


def fill(db_path: Path, clients: int, sessions: int, transactions: int, seed: int = 6) -> None:
    """Fill a database at head with a studio's worth of rows, through plain SQL (fast)."""
    rng = random.Random(seed)
    now = _stamp(FIRST_DAY)
    connection = sqlite3.connect(db_path, isolation_level=None)
    try:
        connection.execute("PRAGMA foreign_keys = OFF")
        connection.execute("PRAGMA cache_size = -200000")
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(
            "INSERT INTO clients (id, first_name, last_name, email, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                (i, f"First{i}", f"Last{i % 997}", f"client{i}@example.com", now, now)
                for i in range(1, clients + 1)
            ),
        )
        owners = [rng.randint(1, clients) for _ in range(sessions)]

        def session_rows() -> Iterator[tuple[Any, ...]]:
            for i in range(1, sessions + 1):
                starts = FIRST_DAY + dt.timedelta(minutes=rng.randrange(DAYS * 24 * 60))
                yield (
                    i,
                    owners[i - 1],
                    rng.choice(ARTISTS),
                    _stamp(starts),
                    _stamp(starts + dt.timedelta(hours=3)),
                    "completed",
                    rng.randrange(50, 2000) * 100,
                    5000,
                    now,
                    now,
                )

        connection.executemany(
            "INSERT INTO tattoo_sessions (id, client_id, artist, starts_at, ends_at, status, "
            "price_cents, deposit_cents, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            session_rows(),
        )
        kinds = ("deposit", "payment", "payment", "tip", "refund")
        methods = ("cash", "card", "card", "bank_transfer", "other")

        def transaction_rows() -> Iterator[tuple[Any, ...]]:
            for i in range(1, transactions + 1):
                session_id = rng.randint(1, sessions)
                at = FIRST_DAY + dt.timedelta(minutes=rng.randrange(DAYS * 24 * 60))
                yield (
                    i,
                    owners[session_id - 1],
                    session_id,
                    rng.choice(kinds),
                    rng.choice(methods),
                    rng.randrange(1, 5000) * 100,
                    _stamp(at),
                    now,
                )

        connection.executemany(
            "INSERT INTO transactions (id, client_id, session_id, kind, method, amount_cents, "
            "occurred_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            transaction_rows(),
        )
        connection.execute("COMMIT")
        # What the app's engine leaves behind: a file in WAL mode.
        connection.execute("PRAGMA journal_mode = WAL")
    finally:
        connection.close()


# --- the three typical queries, as the app writes them and as raw SQL -----------------------


def client_history(client_id: int) -> Select[tuple[Transaction]]:
    """One client's history: every payment, newest first."""
    return (
        select(Transaction)
        .where(Transaction.client_id == client_id)
        .order_by(Transaction.occurred_at.desc())
    )


def day_takings(day: dt.datetime) -> Select[tuple[int | None]]:
    """One day's takings: money in minus refunds, over the day's transactions."""
    signed = case(
        (Transaction.kind == TransactionKind.REFUND, -Transaction.amount_cents),
        else_=Transaction.amount_cents,
    )
    return select(func.sum(signed)).where(
        Transaction.occurred_at >= day, Transaction.occurred_at < day + dt.timedelta(days=1)
    )


def artist_week(artist: str, week: dt.datetime) -> Select[tuple[TattooSession]]:
    """One artist's week: their sessions in seven days, in order."""
    return (
        select(TattooSession)
        .where(
            TattooSession.starts_at >= week,
            TattooSession.starts_at < week + dt.timedelta(days=7),
            TattooSession.artist == artist,
        )
        .order_by(TattooSession.starts_at)
    )


@dataclass(frozen=True)
class Query:
    name: str
    statement: Select[Any]
    raw_sql: str
    raw_params: Sequence[Any]
    run_orm: Callable[[Session], Any]


def queries() -> list[Query]:
    """The bench's three queries with their parameters."""
    history = client_history(QUERY_CLIENT_ID)
    takings = day_takings(QUERY_DAY)
    week = artist_week(QUERY_ARTIST, QUERY_WEEK)
    return [
        Query(
            "one client's history",
            history,
            "SELECT * FROM transactions WHERE client_id = ? ORDER BY occurred_at DESC",
            (QUERY_CLIENT_ID,),
            lambda session: session.scalars(history).all(),
        ),
        Query(
            "one day's takings",
            takings,
            "SELECT sum(CASE WHEN kind = 'refund' THEN -amount_cents ELSE amount_cents END) "
            "FROM transactions WHERE occurred_at >= ? AND occurred_at < ?",
            (_stamp(QUERY_DAY), _stamp(QUERY_DAY + dt.timedelta(days=1))),
            lambda session: session.scalar(takings),
        ),
        Query(
            "one artist's week",
            week,
            "SELECT * FROM tattoo_sessions WHERE starts_at >= ? AND starts_at < ? "
            "AND artist = ? ORDER BY starts_at",
            (_stamp(QUERY_WEEK), _stamp(QUERY_WEEK + dt.timedelta(days=7)), QUERY_ARTIST),
            lambda session: session.scalars(week).all(),
        ),
    ]


def query_plan(connection: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[str]:
    """SQLite's plan for ``sql``: one line per step."""
    return [row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}", tuple(params))]


def uses_an_index(plan: list[str]) -> bool:
    return any("USING" in step and "INDEX" in step for step in plan) and not any(
        step.startswith("SCAN") for step in plan
    )
