"""The finance policy file (TOML): what finance decides, validated key by key at start-up."""

from __future__ import annotations

import tomllib
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from bot.triage.model import BillingKind
from providers.currency import normalise_currency

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class PolicyError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _money(value: object) -> Decimal:
    # TOML floats are binary floats; finance limits must be exact, so only strings and integers count.
    if isinstance(value, float):
        raise ValueError('write amounts as strings, e.g. "500.00", so they stay exact')
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("must be an amount such as \"500.00\"")
    try:
        amount = Decimal(str(value).replace(",", ""))
    except ArithmeticError:
        raise ValueError(f"{value!r} is not an amount") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError("must be zero or more")
    return amount


Money = Annotated[Decimal, BeforeValidator(_money)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class People(_Strict):
    users: list[str] = Field(default_factory=list)
    user_groups: list[str] = Field(default_factory=list)

    @field_validator("users")
    @classmethod
    def _user_ids(cls, ids: list[str]) -> list[str]:
        for user_id in ids:
            if not (user_id[:1] in {"U", "W"} and user_id.isalnum()):
                raise ValueError(f"{user_id!r} is not a Slack user ID (U… or W…)")
        return ids

    @field_validator("user_groups")
    @classmethod
    def _group_ids(cls, ids: list[str]) -> list[str]:
        for group_id in ids:
            if not (group_id.startswith("S") and group_id.isalnum()):
                raise ValueError(f"{group_id!r} is not a Slack user group ID (S…)")
        return ids


class Vip(_Strict):
    emails: list[str] = Field(default_factory=list)
    moonclerk_customer_ids: list[int] = Field(default_factory=list)

    @field_validator("emails")
    @classmethod
    def _lower(cls, emails: list[str]) -> list[str]:
        for email in emails:
            if "@" not in email:
                raise ValueError(f"{email!r} is not an email address")
        return [email.strip().lower() for email in emails]


class Reminders(_Strict):
    lead_time_minutes: int = Field(default=240, ge=0, le=60 * 24 * 14)
    overdue_window_minutes: int = Field(default=120, ge=1, le=60 * 24 * 14)
    # A case waiting for approval: one nudge in its thread (business minutes), then one page to seniors.
    approval_nudge_minutes: int = Field(default=120, ge=1, le=60 * 24 * 14)
    approval_escalation_minutes: int = Field(default=480, ge=1, le=60 * 24 * 30)


class Refunds(_Strict):
    # A Stripe refund of a charge older than this needs a senior approver (bot.actions.refunds).
    max_age_days: int = Field(default=180, ge=1, le=3650)


class BusinessHours(_Strict):
    timezone: str = "UTC"
    start: time = time(9, 0)
    end: time = time(17, 0)
    days: list[str] = Field(default_factory=lambda: list(_WEEKDAYS[:5]))

    @field_validator("timezone")
    @classmethod
    def _zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{name!r} is not an IANA time zone such as Europe/London") from None
        return name

    @field_validator("days")
    @classmethod
    def _days(cls, days: list[str]) -> list[str]:
        lowered = [day.strip().lower()[:3] for day in days]
        for day in lowered:
            if day not in _WEEKDAYS:
                raise ValueError(f"{day!r} is not a weekday (mon … sun)")
        if not lowered:
            raise ValueError("must name at least one day")
        return lowered

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Policy(_Strict):
    approvers: People = Field(default_factory=People)
    senior_approvers: People = Field(default_factory=People)
    approval_thresholds: dict[str, Money] = Field(default_factory=dict)
    # Above these a case needs two different approvers (bot.decisions).
    dual_approval_thresholds: dict[str, Money] = Field(default_factory=dict)
    vip: Vip = Field(default_factory=Vip)
    default_finance_owner: str | None = None
    oncall_user_group: str | None = None
    # [owners]: who owns a new case of each kind, a user (U…/W…) or a user group (S…); before
    # default_finance_owner, after an owner the call itself names.
    owners: dict[str, str] = Field(default_factory=dict)
    reminders: Reminders = Field(default_factory=Reminders)
    refunds: Refunds = Field(default_factory=Refunds)
    business_hours: BusinessHours = Field(default_factory=BusinessHours)

    @field_validator("approval_thresholds", "dual_approval_thresholds")
    @classmethod
    def _currencies(cls, thresholds: dict[str, Decimal]) -> dict[str, Decimal]:
        normalised: dict[str, Decimal] = {}
        for code, amount in thresholds.items():
            currency = normalise_currency(code)
            if currency is None or currency != code.upper():
                raise ValueError(f"{code!r} is not an ISO 4217 currency code")
            normalised[currency] = amount
        return normalised

    @field_validator("default_finance_owner")
    @classmethod
    def _owner(cls, user_id: str | None) -> str | None:
        if user_id is not None and not (user_id[:1] in {"U", "W"} and user_id.isalnum()):
            raise ValueError(f"{user_id!r} is not a Slack user ID (U… or W…)")
        return user_id

    @field_validator("oncall_user_group")
    @classmethod
    def _oncall(cls, group_id: str | None) -> str | None:
        if group_id is not None and not (group_id.startswith("S") and group_id.isalnum()):
            raise ValueError(f"{group_id!r} is not a Slack user group ID (S…)")
        return group_id

    @field_validator("owners")
    @classmethod
    def _owners(cls, owners: dict[str, str]) -> dict[str, str]:
        kinds = {kind.value for kind in BillingKind} - {BillingKind.NOT_BILLING.value}
        for kind, owner in owners.items():
            if kind not in kinds:
                raise ValueError(f"{kind!r} is not a case kind (one of: {', '.join(sorted(kinds))})")
            if not (owner[:1] in {"U", "W", "S"} and owner.isalnum() and len(owner) <= 20):
                raise ValueError(f"owners.{kind}: {owner!r} is not a Slack user ID (U…/W…) or user group ID (S…)")
        return owners

    def owner_for(self, kind: str) -> str | None:
        """The policy's owner for a new case of this kind: [owners], else default_finance_owner."""
        return self.owners.get(kind) or self.default_finance_owner

    def threshold(self, currency: str | None) -> Decimal | None:
        return self.approval_thresholds.get(currency) if currency else None

    def dual_threshold(self, currency: str | None) -> Decimal | None:
        return self.dual_approval_thresholds.get(currency) if currency else None

    def senior_reason(self, amount: Decimal | None, currency: str | None) -> str | None:
        """Why this amount needs a senior approver, or None."""
        if amount is None or currency is None:
            return None
        threshold = self.threshold(currency)
        if threshold is None:
            return f"no approval threshold is set for {currency}, so only a senior approver may act"
        if amount > threshold:
            return f"{amount} {currency} is above the {threshold} {currency} threshold"
        return None

    def approvals_needed(self, amount: Decimal | None, currency: str | None) -> int:
        """How many different approvers a case at this amount needs once it needs approval at all."""
        dual = self.dual_threshold(currency)
        return 2 if amount is not None and dual is not None and amount > dual else 1

    def is_vip(self, *, email: str | None, moonclerk_customer_id: int | None) -> bool:
        if email and email.strip().lower() in self.vip.emails:
            return True
        return moonclerk_customer_id is not None and moonclerk_customer_id in self.vip.moonclerk_customer_ids


def load_policy(path: Path | None) -> Policy:
    """Read and validate the policy file; with no path, the empty default policy (nobody approves)."""
    if path is None:
        return Policy()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError([f"FINANCE_DESK_POLICY: {path} does not exist"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError([f"{path}: not valid TOML: {exc}"]) from None
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(
            [
                f"{path}: {'.'.join(str(part) for part in err['loc']) or '(top level)'}: {err['msg']}"
                for err in exc.errors()
            ]
        ) from None
