"""A write the database refuses raises WriteRefusedError naming the rule in a sentence.

On SQLite and PostgreSQL alike, through the app's engine, with the driver's error chained.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from data.db.errors import DataLayerError, WriteRefusedError
from data.db.refusals import display_name
from data.db.runner import ensure_current
from data.db.session import create_session_factory
from data.models import Client, PaymentMethod, TattooSession, Transaction, TransactionKind

T0 = dt.datetime(2026, 5, 4, 14, 0, tzinfo=dt.UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def app_db(request: pytest.FixtureRequest) -> Iterator[tuple[Engine, Session]]:
    """A writing session of the app's own engine, on a database the runner just created."""
    engine: Engine = request.getfixturevalue(
        "created_engine" if request.param == "sqlite" else "pg_engine"
    )
    if request.param == "postgres":
        assert ensure_current(engine).action == "created"
    factory = create_session_factory(engine)
    with factory() as session:
        yield engine, session
    factory.remove()


def _client(db: Session, name: str, email: str | None = None) -> Client:
    client = Client(first_name=name, last_name="Lovelace", email=email)
    db.add(client)
    db.flush()
    return client


def _payment(client_id: int, session_id: int | None = None, amount: int = 5000) -> Transaction:
    return Transaction(
        client_id=client_id,
        session_id=session_id,
        kind=TransactionKind.PAYMENT,
        method=PaymentMethod.CARD,
        amount_cents=amount,
        occurred_at=T0,
    )


def _refused(engine: Engine, raised: pytest.ExceptionInfo[WriteRefusedError]) -> WriteRefusedError:
    """The checks every refusal passes: for people, about this database, the cause kept."""
    exc = raised.value
    assert isinstance(exc, DataLayerError)
    assert display_name(engine) in str(exc)
    assert exc.sentence in str(exc) and exc.rule in str(exc)
    assert "Nothing of this change was saved" in str(exc)
    assert isinstance(exc.__cause__, engine.dialect.loaded_dbapi.IntegrityError), exc.__cause__
    return exc


def test_a_payment_for_another_clients_session_names_that_rule(
    app_db: tuple[Engine, Session],
) -> None:
    engine, db = app_db
    ada, grace = _client(db, "Ada"), _client(db, "Grace")
    booking = TattooSession(client=ada, artist="Rui", starts_at=T0, price_cents=30000)
    db.add(booking)
    db.commit()
    db.add(_payment(grace.id, booking.id))
    with pytest.raises(WriteRefusedError) as raised:
        db.flush()
    exc = _refused(engine, raised)
    assert exc.sentence == "a payment's session must belong to the same client"
    assert len(exc.rules) == 1 and exc.rules[0].startswith("fk_transactions_")
    db.rollback()
    # The session is usable again: the same payment for the right client is saved.
    db.add(_payment(ada.id, booking.id))
    db.commit()
    assert db.scalar(select(func.count()).select_from(Transaction)) == 1


def test_a_check_a_unique_and_a_not_null_rule_each_get_their_sentence(
    app_db: tuple[Engine, Session],
) -> None:
    engine, db = app_db
    ada = _client(db, "Ada", email="ada@example.com")
    db.commit()

    db.add(_payment(ada.id, amount=0))
    with pytest.raises(WriteRefusedError) as raised:
        db.flush()
    assert _refused(engine, raised).sentence == "a payment's amount must be more than zero"
    db.rollback()

    db.add(Client(first_name="Twin", last_name="Lovelace", email="ADA@example.com"))
    with pytest.raises(WriteRefusedError) as raised:
        db.flush()
    exc = _refused(engine, raised)
    assert exc.sentence == "two clients cannot have the same email address"
    db.rollback()

    with pytest.raises(WriteRefusedError) as raised:
        db.execute(
            text(
                "INSERT INTO clients (first_name, last_name, created_at, updated_at) "
                "VALUES (NULL, 'Nameless', '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')"
            )
        )
    assert _refused(engine, raised).sentence == "a client's first name must be given"
    db.rollback()


def test_deleting_a_client_with_history_says_to_archive_instead(
    app_db: tuple[Engine, Session],
) -> None:
    engine, db = app_db
    ada = _client(db, "Ada")
    db.add(_payment(ada.id))
    db.commit()
    db.delete(ada)
    with pytest.raises(WriteRefusedError) as raised:
        db.commit()
    exc = _refused(engine, raised)
    # SQLite does not say which key: every rule that protects a client may be named.
    assert "a client with payments cannot be deleted: archive the client instead" in exc.sentence
    assert all(rule.endswith("_clients") for rule in exc.rules), exc.rules
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Client)) == 1
