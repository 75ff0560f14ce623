"""The models; importing this package completes ``Base.metadata``."""

from data.models.base import NAMING_CONVENTION, Base, UTCDateTime, utcnow
from data.models.client import Client
from data.models.tattoo_session import SessionStatus, TattooSession
from data.models.transaction import PaymentMethod, Transaction, TransactionKind

# The complete MetaData at package level, where tools such as pytest-alembic look for it.
metadata = Base.metadata

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
    "metadata",
    "utcnow",
]
