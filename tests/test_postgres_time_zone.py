"""The app reads every moment it may store, whatever time zone the server's sessions use.

The guards let a server store years 1 to 9999 in UTC. psycopg answers in the session's time
zone, so on a server set to New York the first moment of year 1 would come back in year 0,
which Python cannot represent: the client's record could be written but never read again.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import create_engine, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from data.models import Client
from tests.postgres import studio_at_head

EDGES = [
    dt.datetime(1, 1, 1, tzinfo=dt.UTC),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
    dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.UTC),
]


def server_time_zone(url: URL, zone: str) -> None:
    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(f"ALTER DATABASE \"{url.database}\" SET timezone = '{zone}'")
    finally:
        engine.dispose()


def test_the_apps_engine_reads_the_edges_of_time_on_a_server_far_from_utc(pg_url: URL) -> None:
    from data.db.session import create_app_engine

    studio_at_head(pg_url)
    for zone in ("America/New_York", "Pacific/Kiritimati"):
        server_time_zone(pg_url, zone)
        engine = create_app_engine(pg_url)
        try:
            with Session(engine) as session, session.begin():
                session.query(Client).filter(Client.last_name == "Edge").delete()
                session.add_all(
                    Client(first_name=str(i), last_name="Edge", created_at=moment)
                    for i, moment in enumerate(EDGES)
                )
            with Session(engine) as session:
                read = session.scalars(
                    select(Client.created_at).where(Client.last_name == "Edge").order_by(Client.id)
                ).all()
                # The server's own session answers in the zone it was given.
                zone_seen = session.connection().exec_driver_sql("SHOW timezone").scalar()
        finally:
            engine.dispose()
        assert read == EDGES, zone
        assert all(moment.tzinfo is dt.UTC for moment in read)
        assert zone_seen == "UTC"
