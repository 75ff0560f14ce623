"""The models' rules, enforced by the database itself (not only by Python).

Every rule runs on both backends: the ``db`` fixture is parametrized over SQLite and
PostgreSQL (the latter marked ``postgres``, so SQLite-only runs never need the server).
Tests that only make sense on one backend take ``sqlite_db`` or ``postgres_db`` directly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from data.db.errors import WriteRefusedError
from data.db.runner import ensure_current
from data.db.session import create_session_factory
from data.models import (
    Base,
    Client,
    PaymentMethod,
    SessionStatus,
    TattooSession,
    Transaction,
    TransactionKind,
)

T0 = dt.datetime(2026, 5, 4, 14, 0, tzinfo=dt.UTC)

# Not UTC, and not even a whole number of hours from it: psycopg answers timestamptz in
# the session's zone, so a type that only relabels the value as UTC would be 5:45 off.
SESSION_ZONE = "Asia/Kathmandu"


def _session(engine: Engine) -> Iterator[Session]:
    factory = create_session_factory(engine)
    with factory() as session:
        yield session
    factory.remove()


@pytest.fixture
def sqlite_db(created_engine: Engine) -> Iterator[Session]:
    """A session on a fresh SQLite file that the runner has just created."""
    yield from _session(created_engine)


@pytest.fixture(scope="module")
def zoned_pg_engine(pg_run_database: URL) -> Iterator[Engine]:
    """The run database, created by the runner, with connections in a non-UTC time zone."""
    engine = create_engine(pg_run_database, connect_args={"options": f"-c TimeZone={SESSION_ZONE}"})
    assert ensure_current(engine).action == "created"
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_db(zoned_pg_engine: Engine) -> Iterator[Session]:
    """A session on the run's PostgreSQL database, emptied again after the test."""
    yield from _session(zoned_pg_engine)
    # Every table of the models, whatever the head adds: CASCADE orders the foreign keys.
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    with zoned_pg_engine.begin() as connection:
        connection.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest) -> Session:
    """The same rules on each backend; PostgreSQL's fixtures are only requested for its run."""
    session: Session = request.getfixturevalue(f"{request.param}_db")
    return session


def _client(db: Session, name: str = "Ada", email: str | None = None) -> Client:
    client = Client(first_name=name, last_name="Lovelace", email=email)
    db.add(client)
    db.flush()
    return client


def _booking(db: Session, client: Client, **fields: object) -> TattooSession:
    values: dict[str, object] = {"artist": "Rui", "starts_at": T0, "price_cents": 30000}
    values.update(fields)
    booking = TattooSession(client=client, **values)
    db.add(booking)
    db.flush()
    return booking


def _payment(db: Session, client: Client, amount: int = 5000, **fields: object) -> Transaction:
    values: dict[str, object] = {
        "kind": TransactionKind.PAYMENT,
        "method": PaymentMethod.CARD,
        "amount_cents": amount,
        "occurred_at": T0,
    }
    values.update(fields)
    payment = Transaction(client=client, **values)
    db.add(payment)
    db.flush()
    return payment


# A refused write: WriteRefusedError through the app's engine (it names the rule), the
# driver's IntegrityError through a plain engine.
REFUSED = (WriteRefusedError, IntegrityError)
# SQLite names no foreign key in its message; PostgreSQL names the constraint.
SESSION_FK = r"FOREIGN KEY|fk_transactions_session_id_client_id_tattoo_sessions"


def test_relationships_work_both_ways(db: Session) -> None:
    client = _client(db)
    booking = _booking(db, client)
    payment = _payment(db, client, session=booking)
    db.commit()
    assert payment.session is booking and payment.client is client
    assert booking.transactions == [payment] and booking.client is client
    assert client.sessions == [booking] and client.transactions == [payment]
    assert payment.client_id == booking.client_id


def test_orphan_transaction_is_refused(db: Session) -> None:
    with pytest.raises(REFUSED, match=r"FOREIGN KEY|fk_transactions_client_id_clients"):
        db.execute(
            text(
                "INSERT INTO transactions (client_id, kind, method, amount_cents, occurred_at, "
                "created_at) VALUES (999, 'payment', 'cash', 100, '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')"
            )
        )


def test_client_with_history_cannot_be_deleted(db: Session) -> None:
    client = _client(db)
    _booking(db, client)
    _payment(db, client)
    db.commit()
    db.delete(client)
    with pytest.raises(REFUSED, match=r"FOREIGN KEY|fk_\w+_clients\b"):
        db.commit()
    db.rollback()
    assert db.scalar(select(Client).where(Client.id == client.id)) is not None
    assert len(db.scalars(select(Transaction)).all()) == 1
    assert len(db.scalars(select(TattooSession)).all()) == 1


def test_a_session_with_payments_cannot_be_deleted(db: Session) -> None:
    client = _client(db)
    booking = _booking(db, client)
    _payment(db, client, session=booking)
    db.commit()
    with pytest.raises(REFUSED, match=SESSION_FK):
        db.execute(text("DELETE FROM tattoo_sessions WHERE id = :id"), {"id": booking.id})


@pytest.mark.parametrize("amount", [0, -500])
def test_amount_must_be_positive(db: Session, amount: int) -> None:
    client = _client(db)
    with pytest.raises(REFUSED, match="ck_transactions_amount_positive"):
        _payment(db, client, amount=amount)


def test_session_cannot_end_before_it_starts(db: Session) -> None:
    client = _client(db)
    with pytest.raises(REFUSED, match="ck_tattoo_sessions_ends_after_starts"):
        _booking(db, client, ends_at=T0 - dt.timedelta(hours=1))


@pytest.mark.parametrize("column", ["price_cents", "deposit_cents"])
def test_session_amounts_not_negative(db: Session, column: str) -> None:
    client = _client(db)
    name = column.replace("_cents", "")
    with pytest.raises(REFUSED, match=f"ck_tattoo_sessions_{name}_not_negative"):
        _booking(db, client, **{column: -1})


@pytest.mark.parametrize(
    ("table", "column", "constraint"),
    [
        ("tattoo_sessions", "status", "ck_tattoo_sessions_status"),
        ("transactions", "kind", "ck_transactions_kind"),
        ("transactions", "method", "ck_transactions_method"),
    ],
)
def test_unknown_enum_values_are_refused_by_the_database(
    db: Session, table: str, column: str, constraint: str
) -> None:
    client = _client(db)
    booking = _booking(db, client)
    payment = _payment(db, client)
    row_id = booking.id if table == "tattoo_sessions" else payment.id
    with pytest.raises(REFUSED, match=constraint):
        db.execute(text(f"UPDATE {table} SET {column} = 'bogus' WHERE id = :id"), {"id": row_id})


def test_enums_are_stored_as_lower_case_values(db: Session) -> None:
    client = _client(db)
    _booking(db, client, status=SessionStatus.NO_SHOW)
    _payment(db, client, kind=TransactionKind.TIP, method=PaymentMethod.BANK_TRANSFER)
    db.commit()
    assert db.execute(text("SELECT status FROM tattoo_sessions")).scalar() == "no_show"
    assert db.execute(text("SELECT kind, method FROM transactions")).one() == (
        "tip",
        "bank_transfer",
    )
    assert db.scalars(select(TattooSession)).one().status is SessionStatus.NO_SHOW


def test_payment_cannot_point_at_another_clients_session(db: Session) -> None:
    ada = _client(db, "Ada")
    grace = _client(db, "Grace")
    adas_session = _booking(db, ada)
    db.commit()
    with pytest.raises(REFUSED, match=SESSION_FK):
        db.execute(
            text(
                "INSERT INTO transactions (client_id, session_id, kind, method, amount_cents, "
                "occurred_at, created_at) VALUES (:client, :session, 'payment', 'cash', 100, "
                "'2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')"
            ),
            {"client": grace.id, "session": adas_session.id},
        )


def test_datetimes_round_trip_as_utc(db: Session) -> None:
    client = _client(db)
    berlin_evening = dt.datetime(2026, 7, 1, 19, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    booking = _booking(db, client, starts_at=berlin_evening)
    db.commit()
    db.expire_all()
    stored = db.get(TattooSession, booking.id)
    assert stored is not None
    assert stored.starts_at.tzinfo is dt.UTC
    assert stored.starts_at == berlin_evening
    assert (stored.starts_at.hour, stored.starts_at.minute) == (17, 30)
    assert stored.created_at.tzinfo is dt.UTC


def test_naive_datetime_is_refused(db: Session) -> None:
    client = _client(db)
    with pytest.raises(StatementError, match="naive datetime"):
        _booking(db, client, starts_at=dt.datetime(2026, 7, 1, 19, 30))


def test_email_is_lower_case_and_unique_when_present(db: Session) -> None:
    first = _client(db, "Ada", email="  Ada@Example.COM ")
    assert first.email == "ada@example.com"
    _client(db, "No-email-1")
    _client(db, "No-email-2")  # several clients without email are fine
    with pytest.raises(REFUSED, match=r"UNIQUE constraint failed: clients\.email|uq_clients_email"):
        _client(db, "Twin", email="ADA@example.com")
    db.rollback()
    with pytest.raises(REFUSED, match="ck_clients_email_lower_case"):
        db.execute(
            text(
                "INSERT INTO clients (first_name, last_name, email, created_at, updated_at) "
                "VALUES ('X', 'Y', 'Upper@Example.com', '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')"
            )
        )


# SQLite only: files saved before the storage guards (or by other writers then) hold text in
# many shapes, which the read path must still parse. The guards refuse such text now, so the
# test removes the update guard first, as such a file never had it.
@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ("2026-07-01 17:30:00.000000", dt.datetime(2026, 7, 1, 17, 30, tzinfo=dt.UTC)),
        ("2026-07-01 19:30:00+02:00", dt.datetime(2026, 7, 1, 17, 30, tzinfo=dt.UTC)),
        ("2026-07-01", dt.datetime(2026, 7, 1, tzinfo=dt.UTC)),
    ],
)
def test_stored_text_from_other_writers_reads_back_as_utc(
    sqlite_db: Session, stored: str, expected: dt.datetime
) -> None:
    db = sqlite_db
    booking = _booking(db, _client(db))
    db.commit()
    db.execute(text('DROP TRIGGER IF EXISTS "guard_tattoo_sessions_update"'))
    db.execute(text("UPDATE tattoo_sessions SET starts_at = :s"), {"s": stored})
    db.commit()
    db.expire_all()
    reread = db.get(TattooSession, booking.id)
    assert reread is not None
    assert reread.starts_at == expected
    assert reread.starts_at.tzinfo is dt.UTC


# PostgreSQL only: the session's time zone is what makes the UTC round trip a real test.
@pytest.mark.postgres
def test_the_connection_really_is_in_another_time_zone(postgres_db: Session) -> None:
    assert postgres_db.execute(text("SHOW TimeZone")).scalar() == SESSION_ZONE


@pytest.mark.postgres
def test_the_driver_answers_in_the_sessions_zone(postgres_db: Session) -> None:
    # The driver really answers in the session's zone, so the model's type (tested in
    # test_datetimes_round_trip_as_utc) has to convert to UTC, not merely relabel.
    db = postgres_db
    berlin_evening = dt.datetime(2026, 7, 1, 19, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    _booking(db, _client(db), starts_at=berlin_evening)
    db.commit()
    raw = db.execute(text("SELECT starts_at FROM tattoo_sessions")).scalar_one()
    assert raw.utcoffset() == dt.timedelta(hours=5, minutes=45)
    assert raw == berlin_evening


def test_a_value_outside_the_enum_is_an_error_on_read_not_none(sqlite_db: Session) -> None:
    """Only a file edited behind the CHECK's back can hold one; reading it must not hide it."""
    booking = _booking(sqlite_db, _client(sqlite_db))
    sqlite_db.commit()
    sqlite_db.execute(text("PRAGMA ignore_check_constraints = ON"))
    sqlite_db.execute(text("UPDATE tattoo_sessions SET status = 'postponed'"))
    sqlite_db.commit()
    sqlite_db.expire_all()
    with pytest.raises(ValueError, match="'postponed' is not a valid SessionStatus"):
        sqlite_db.get(TattooSession, booking.id)


# The models' bind conversions take shortcuts for the values a copy sends by the million
# (an enum member, an aware UTC datetime): each must give exactly what the general
# conversion (process_bind_param, then the dialect's own) gives, and refuse what it refuses.
BIND_VALUES = (
    None,
    T0,
    T0.replace(microsecond=999_999),
    dt.datetime(2026, 7, 1, 19, 30, tzinfo=ZoneInfo("Europe/Berlin")),
    dt.datetime(2026, 7, 1, 19, 30, tzinfo=dt.timezone(dt.timedelta(0))),  # UTC, another object
    dt.datetime(2026, 7, 1, 19, 30),  # naive: refused
    "2026-07-01 19:30:00",  # not a datetime: refused
    *SessionStatus,
    *(member.value for member in SessionStatus),
    "postponed",  # unknown: refused
)


def _general(column_type: object, dialect: object) -> object:
    from sqlalchemy import TypeDecorator

    assert isinstance(column_type, TypeDecorator)
    impl = column_type.impl_instance.dialect_impl(dialect).bind_processor(dialect)  # type: ignore[arg-type]

    def process(value: object) -> object:
        converted = column_type.process_bind_param(value, dialect)  # type: ignore[arg-type]
        return impl(converted) if impl is not None else converted

    return process


def _outcome(process: object, value: object) -> object:
    try:
        converted = process(value)  # type: ignore[operator]
    except (TypeError, ValueError) as exc:
        return type(exc)
    return (type(converted), converted, getattr(converted, "tzinfo", None))


@pytest.mark.parametrize("dialect_name", ["sqlite", "postgresql"])
@pytest.mark.parametrize("column", ["starts_at", "status"])
def test_bind_shortcuts_give_what_the_general_conversion_gives(
    dialect_name: str, column: str
) -> None:
    url = "sqlite://" if dialect_name == "sqlite" else "postgresql+psycopg://"
    dialect = create_engine(url).dialect  # never connected: only its conversions are used
    column_type = TattooSession.__table__.c[column].type
    fast = column_type.dialect_impl(dialect).bind_processor(dialect)
    general = _general(column_type, dialect)
    for value in BIND_VALUES:
        expected = _outcome(general, value)
        got = _outcome(fast, value) if fast is not None else _outcome(lambda v: v, value)
        if column == "status" and isinstance(value, dt.datetime):
            continue  # not a value anyone binds to an enum column
        assert got == expected, (dialect_name, column, value)
