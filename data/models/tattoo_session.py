"""A tattoo session: an appointment and the work done in it."""

from __future__ import annotations

import datetime as dt
import enum
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from data.models.base import (
    Base,
    StrEnumType,
    cents,
    enum_check,
    enum_words,
    intpk,
    noun,
    rule,
    str100,
    utcnow,
)

if TYPE_CHECKING:
    from data.models.client import Client
    from data.models.transaction import Transaction


class SessionStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"


class TattooSession(Base):
    """One booked or worked session for one client."""

    __tablename__ = "tattoo_sessions"
    __table_args__ = (
        CheckConstraint(
            "ends_at IS NULL OR ends_at > starts_at",
            name="ends_after_starts",
            info=rule("a tattoo session must end after it starts"),
        ),
        CheckConstraint(
            "price_cents >= 0",
            name="price_not_negative",
            info=rule("a tattoo session's price cannot be negative"),
        ),
        CheckConstraint(
            "deposit_cents >= 0",
            name="deposit_not_negative",
            info=rule("a tattoo session's deposit cannot be negative"),
        ),
        CheckConstraint(
            enum_check("status", SessionStatus),
            name="status",
            info=rule(f"a tattoo session's status must be {enum_words(SessionStatus)}"),
        ),
        # The target of transactions' composite foreign key: a payment's session must
        # belong to the payment's client.
        UniqueConstraint(
            "id", "client_id", info=rule("a tattoo session belongs to exactly one client")
        ),
        noun("tattoo session"),
    )

    id: Mapped[intpk]
    client_id: Mapped[int] = mapped_column(
        ForeignKey(
            "clients.id",
            ondelete="RESTRICT",
            info=rule(
                "a tattoo session must belong to an existing client",
                parent="a client with tattoo sessions cannot be deleted: archive the client "
                "instead",
            ),
        ),
        index=True,
    )
    artist: Mapped[str100]
    starts_at: Mapped[dt.datetime] = mapped_column(index=True)
    ends_at: Mapped[dt.datetime | None]
    status: Mapped[SessionStatus] = mapped_column(
        StrEnumType(SessionStatus), default=SessionStatus.SCHEDULED
    )
    placement: Mapped[str | None] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    price_cents: Mapped[cents] = mapped_column(default=0)
    deposit_cents: Mapped[cents] = mapped_column(default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    client: Mapped[Client] = relationship(back_populates="sessions", overlaps="transactions")
    transactions: Mapped[list[Transaction]] = relationship(
        back_populates="session",
        passive_deletes="all",
        foreign_keys="[Transaction.session_id, Transaction.client_id]",
        overlaps="client,transactions",
    )

    def __repr__(self) -> str:
        return f"TattooSession(id={self.id!r}, client_id={self.client_id!r}, at={self.starts_at!r})"
