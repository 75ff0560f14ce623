"""Money paid or returned: deposits, payments, tips and refunds."""

from __future__ import annotations

import datetime as dt
import enum
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, ForeignKeyConstraint, Text
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
    utcnow,
)

if TYPE_CHECKING:
    from data.models.client import Client
    from data.models.tattoo_session import TattooSession


class TransactionKind(enum.StrEnum):
    DEPOSIT = "deposit"
    PAYMENT = "payment"
    TIP = "tip"
    REFUND = "refund"


class PaymentMethod(enum.StrEnum):
    CASH = "cash"
    CARD = "card"
    BANK_TRANSFER = "bank_transfer"
    OTHER = "other"


class Transaction(Base):
    """One movement of money, always positive; ``kind`` says which way it went."""

    __tablename__ = "transactions"
    __table_args__ = (
        CheckConstraint(
            "amount_cents > 0",
            name="amount_positive",
            info=rule("a payment's amount must be more than zero"),
        ),
        CheckConstraint(
            enum_check("kind", TransactionKind),
            name="kind",
            info=rule(f"a payment's kind must be {enum_words(TransactionKind)}"),
        ),
        CheckConstraint(
            enum_check("method", PaymentMethod),
            name="method",
            info=rule(f"a payment's method must be {enum_words(PaymentMethod)}"),
        ),
        # The database, not only Python, refuses a payment for one client recorded against
        # another client's session. RESTRICT: financial history is never cascade-deleted.
        ForeignKeyConstraint(
            ["session_id", "client_id"],
            ["tattoo_sessions.id", "tattoo_sessions.client_id"],
            ondelete="RESTRICT",
            info=rule(
                "a payment's session must belong to the same client",
                parent="a tattoo session with payments cannot be deleted or given to another "
                "client",
            ),
        ),
        noun("payment"),
    )

    id: Mapped[intpk]
    client_id: Mapped[int] = mapped_column(
        ForeignKey(
            "clients.id",
            ondelete="RESTRICT",
            info=rule(
                "a payment must belong to an existing client",
                parent="a client with payments cannot be deleted: archive the client instead",
            ),
        ),
        index=True,
    )
    session_id: Mapped[int | None] = mapped_column(index=True)
    kind: Mapped[TransactionKind] = mapped_column(StrEnumType(TransactionKind))
    method: Mapped[PaymentMethod] = mapped_column(StrEnumType(PaymentMethod))
    amount_cents: Mapped[cents]
    occurred_at: Mapped[dt.datetime] = mapped_column(index=True)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    client: Mapped[Client] = relationship(
        back_populates="transactions", overlaps="session,transactions"
    )
    session: Mapped[TattooSession | None] = relationship(
        back_populates="transactions",
        foreign_keys="[Transaction.session_id, Transaction.client_id]",
        overlaps="client,transactions",
    )

    def __repr__(self) -> str:
        return (
            f"Transaction(id={self.id!r}, client_id={self.client_id!r}, kind={self.kind!r}, "
            f"amount_cents={self.amount_cents!r})"
        )
