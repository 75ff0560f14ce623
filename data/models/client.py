"""A studio's client."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, Date, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from data.models.base import Base, intpk, noun, rule, str100, utcnow

if TYPE_CHECKING:
    from data.models.tattoo_session import TattooSession
    from data.models.transaction import Transaction


class Client(Base):
    """A person the studio works for. Archived, never deleted, once they have history."""

    __tablename__ = "clients"
    __table_args__ = (
        CheckConstraint(
            "email = lower(email)",
            name="email_lower_case",
            info=rule("a client's email address must be stored in lower case"),
        ),
        UniqueConstraint("email", info=rule("two clients cannot have the same email address")),
        noun("client"),
    )

    id: Mapped[intpk]
    first_name: Mapped[str100]
    last_name: Mapped[str100]
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(40))
    date_of_birth: Mapped[dt.date | None] = mapped_column(Date)
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    archived_at: Mapped[dt.datetime | None]

    # passive_deletes="all": the ORM never touches children when a client is deleted, so
    # the database's RESTRICT refuses to delete a client with history.
    sessions: Mapped[list[TattooSession]] = relationship(
        back_populates="client", passive_deletes="all", overlaps="transactions"
    )
    transactions: Mapped[list[Transaction]] = relationship(
        back_populates="client", passive_deletes="all", overlaps="session,transactions"
    )

    @validates("email")
    def _normalise_email(self, _key: str, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        return value or None

    def __repr__(self) -> str:
        return f"Client(id={self.id!r}, name={self.first_name!r} {self.last_name!r})"
