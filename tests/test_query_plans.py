"""Every lookup by foreign key and every date-range query uses an index."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, Select, select

from data.models import TattooSession, Transaction

DAY = dt.datetime(2026, 5, 4, tzinfo=dt.UTC)

QUERIES: dict[str, Select[tuple[object]]] = {
    "sessions of a client": select(TattooSession).where(TattooSession.client_id == 7),
    "sessions in a date range": select(TattooSession).where(
        TattooSession.starts_at >= DAY, TattooSession.starts_at < DAY + dt.timedelta(days=7)
    ),
    "transactions of a client": select(Transaction).where(Transaction.client_id == 7),
    "transactions of a session": select(Transaction).where(Transaction.session_id == 3),
    "transactions in a date range": select(Transaction).where(
        Transaction.occurred_at >= DAY, Transaction.occurred_at < DAY + dt.timedelta(days=1)
    ),
}


@pytest.mark.parametrize("name", QUERIES)
def test_query_uses_an_index(created_engine: Engine, name: str) -> None:
    statement = QUERIES[name]
    compiled = statement.compile(created_engine, compile_kwargs={"literal_binds": True})
    with created_engine.connect() as connection:
        plan = [row[3] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")]
    assert any("USING INDEX" in step or "USING COVERING INDEX" in step for step in plan), plan
    assert not any(step.startswith("SCAN") for step in plan), plan
