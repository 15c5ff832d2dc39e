"""The customer directory: provider customers copied into the database, normalised and indexed.

MoonClerk has no search, so matching and `/finance lookup` query these rows instead of scanning its
customer list. A row holds only what identifies a customer (IDs, name, email, phone, custom ID, the
provider's `cus_…` reference, the subscription status): never card, bank or payment details, and
nothing else from the provider's custom fields. The provider stays the truth: whoever acts on a row
reads the customer once more, directly, first (bot.lookup.directory).

`directory_sync` holds one row per provider: the lease that lets one process sync at a time across
replicas, where the current pass has got to (so a restart resumes there), and how fresh the copy is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.types import UTCDateTime


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(**kwargs: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kwargs)


class DirectoryCustomer(SQLModel, table=True):
    __tablename__ = "directory_customers"
    __table_args__ = (
        UniqueConstraint("provider", "external_id", name="uq_directory_customers_provider_external_id"),
        # One index per way in: each lookup or candidate query is an index probe, never a scan.
        Index("ix_directory_customers_email", "email"),
        Index("ix_directory_customers_email_base", "email_base"),
        Index("ix_directory_customers_phone", "phone"),
        Index("ix_directory_customers_custom_id_key", "custom_id_key"),
        Index("ix_directory_customers_reference", "reference"),
        Index("ix_directory_customers_name_key", "name_key"),
        Index("ix_directory_customers_name_last", "name_last"),
        Index("ix_directory_customers_name_first", "name_first"),
        # The end of a pass deletes what it did not see: provider + pass number.
        Index("ix_directory_customers_provider_seen_pass", "provider", "seen_pass"),
    )

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=20)
    # The provider's own ID as text: MoonClerk's number ("523425"), Stripe's "cus_…".
    external_id: str = Field(max_length=64)
    name: str | None = Field(default=None, max_length=200)  # as the provider has it, for display
    # Folded name words (lower case, no accents or punctuation), sorted: equal for "Ryan Wood" and
    # "wood, ryan", so exact and reordered names are one index probe.
    name_key: str | None = Field(default=None, max_length=200)
    name_first: str | None = Field(default=None, max_length=100)
    name_last: str | None = Field(default=None, max_length=100)
    email: str | None = Field(default=None, max_length=254)  # trimmed, lower case
    email_base: str | None = Field(default=None, max_length=254)  # the same without a +tag
    phone: str | None = Field(default=None, max_length=20)  # E.164
    custom_id: str | None = Field(default=None, max_length=100)
    custom_id_key: str | None = Field(default=None, max_length=100)  # trimmed, case-folded
    reference: str | None = Field(default=None, max_length=64)  # e.g. Stripe's cus_…
    status: str | None = Field(default=None, max_length=20)
    seen_pass: int = 0  # the sync pass that last saw it (a write-through counts as seen)
    synced_at: datetime = _ts(default_factory=_utcnow)


class DirectorySync(SQLModel, table=True):
    __tablename__ = "directory_sync"

    provider: str = Field(primary_key=True, max_length=20)
    # The lease: the process holding it (until lease_until) is the only one syncing this provider.
    lease_owner: str | None = Field(default=None, max_length=100)
    lease_until: datetime | None = _ts(default=None)
    pass_no: int = 0  # the current (or last) pass
    pass_started_at: datetime | None = _ts(default=None)
    next_offset: int | None = None  # where the current pass resumes; None: no pass under way
    last_full_at: datetime | None = _ts(default=None)  # when the last complete pass started
    last_full_seconds: float | None = None
    last_page_at: datetime | None = _ts(default=None)
    last_error: str | None = Field(default=None, max_length=500)
    last_error_at: datetime | None = _ts(default=None)
    customers: int = 0  # rows after the last complete pass
