"""The models; importing this package completes ``Base.metadata``."""

from data.models.base import NAMING_CONVENTION, Base, UTCDateTime, utcnow
from data.models.client import Client
from data.models.tattoo_session import SessionStatus, TattooSession
from data.models.transaction import PaymentMethod, Transaction, TransactionKind

__all__ = [
    "NAMING_CONVENTION",
    "Base",
    "Client",
    "PaymentMethod",
    "SessionStatus",
    "TattooSession",
    "Transaction",
    "TransactionKind",
    "UTCDateTime",
    "utcnow",
]
