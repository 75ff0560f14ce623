"""Money paid or returned: deposits, payments, tips and refunds."""

from __future__ import annotations

import datetime as dt
import enum
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, ForeignKeyConstraint, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from data.models.base import Base, StrEnumType, cents, enum_check, intpk, utcnow

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
        CheckConstraint("amount_cents > 0", name="amount_positive"),
        CheckConstraint(enum_check("kind", TransactionKind), name="kind"),
        CheckConstraint(enum_check("method", PaymentMethod), name="method"),
        # The database, not only Python, refuses a payment for one client recorded against
        # another client's session. RESTRICT: financial history is never cascade-deleted.
        ForeignKeyConstraint(
            ["session_id", "client_id"],
            ["tattoo_sessions.id", "tattoo_sessions.client_id"],
            ondelete="RESTRICT",
        ),
    )

    id: Mapped[intpk]
    client_id: Mapped[int] = mapped_column(
        ForeignKey("clients.id", ondelete="RESTRICT"), index=True
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
