"""Every interactive ID and the one value encoding: the contract between messages and their listeners.

Both are an integration surface (README lists them). Listeners are registered on these exact strings
and old messages stay in Slack for months, so a string may be renamed only by adding a new one, and a
value shape that was ever posted must stay readable.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, ClassVar, Final, Self

from pydantic import BaseModel, ConfigDict, Field

from blocks.limits import MAX_BUTTON_VALUE


class ActionId(StrEnum):
    """The card's buttons, in the order blocks.card offers them. Approve, deny and resolve also appear on
    the Home tab and resolve in a thread once a follow-up is done: same IDs, same rules."""

    APPROVE = "approve"
    DENY = "deny"
    NOTE_MOONCLERK = "note_moonclerk"
    INVOICE_POOF = "invoice_poof"
    PAYOUT_POOF = "payout_poof"
    REFUND_STRIPE = "refund_stripe"
    RESOLVE = "resolve"
    ROUTE_REVIEW = "route_review"
    ASSIGN_SELF = "assign_self"
    SNOOZE = "snooze"
    DISMISS = "dismiss"
    # Email the customer (bot.mail): approvers only, to the verified recipient.
    SEND_TO_CUSTOMER = "send_to_customer"


class ControlId(StrEnum):
    """Every other interactive element: in a card's thread or ledger line, on a reminder, in review, on Home."""

    CONFIRM_PAYOUT = "confirm_payout"
    CALLBACK_DONE = "callback_done"
    RETRY_ACTION = "retry_action"
    RECONCILE_ACTION = "reconcile_action"
    REMINDER_DONE = "reminder_done"
    REMINDER_SNOOZE = "reminder_snooze"
    REMINDER_REASSIGN = "reminder_reassign"
    REVIEW_PICK = "review_pick"
    HOME_OPEN_REVIEW = "home_open_review"


# Home's case rows are URL buttons named `home_open_<group>_<case id>`: matched by this prefix, never by ID.
HOME_OPEN_PREFIX: Final = "home_open"


class CallbackId(StrEnum):
    """Modal callback IDs."""

    INVOICE_POOF = "invoice_poof_modal"
    PAYOUT_POOF = "payout_poof_modal"
    REFUND_STRIPE = "refund_stripe_modal"
    REMINDER_SNOOZE = "reminder_snooze_modal"
    REMINDER_DONE = "reminder_done_modal"
    DENY = "deny_modal"
    RESOLVE = "resolve_modal"
    SEND_TO_CUSTOMER = "send_to_customer_modal"


class SlashCommand(StrEnum):
    FINANCE = "/finance"


_NUMBER = re.compile(r"[0-9]{1,18}")
_NONE: Final = "none"


class CaseRef(BaseModel):
    """What an interactive element carries back: IDs only, never amounts, names or other PII.

    Slack echoes values in every interaction payload and its logs, and the listener reads the current
    case from the database anyway. One encoding, JSON (`dump`), read back by one parser (`parse`),
    which also reads the colon form (`key`) of the values that must stay short or stay as posted:
    review options (`7:700`, `7:none`) and the reminder controls' block ID (`reminder:7:99`).
    """

    # Unknown keys are refused so nothing else can ride along in a value.
    model_config = ConfigDict(extra="forbid", frozen=True)
    # What the listener answers when a value no longer parses (an old or tampered message).
    stale: ClassVar[str] = "That button is out of date."
    prefix: ClassVar[str] = ""

    case_id: int = Field(ge=1, lt=2**63)

    def dump(self) -> str:
        value = self.model_dump_json()
        # A guard that survives `python -O`: Slack rejects the whole message over this limit.
        if len(value) > MAX_BUTTON_VALUE:
            raise ValueError(f"{type(self).__name__} is {len(value)} characters, limit {MAX_BUTTON_VALUE}")
        return value

    def key(self) -> str:
        """The colon form: the fields in order, None as `none`."""
        parts = [_NONE if value is None else str(value) for value in self.model_dump().values()]
        return ":".join([self.prefix, *parts] if self.prefix else parts)

    @classmethod
    def parse(cls, value: str) -> Self:
        """Either form back into the model; ValueError (a pydantic ValidationError) when it is neither."""
        if value.startswith("{"):
            return cls.model_validate_json(value)
        parts = value.split(":")
        if cls.prefix and parts[0] == cls.prefix:
            parts = parts[1:]
        fields: dict[str, Any] = {}
        for name, part in zip(cls.model_fields, parts, strict=False):
            fields[name] = None if part == _NONE else int(part) if _NUMBER.fullmatch(part) else part
        if len(parts) > len(cls.model_fields):
            fields["unexpected"] = parts[len(cls.model_fields):]  # refused by extra="forbid"
        # Strict: the colon form is only ever written from ints, so " 7" or "+7" is not one of ours.
        return cls.model_validate(fields, strict=True)

    @classmethod
    def read(cls, action: dict[str, Any]) -> Self:
        """The value a clicked element carries: a button's `value`."""
        return cls.parse(str(action.get("value") or ""))


class ButtonValue(CaseRef):
    """A card button (and the modals it opens): which case, which call, and which render of the card.

    `v` lets a listener refuse a click made on a stale card (the card_version it was rendered from).
    """

    call_id: str = Field(min_length=1, max_length=255)
    v: int = Field(ge=0)


class MailValue(ButtonValue):
    """The email modal: its case and card, and which email of the call it will send (`n`, the last part of
    the idempotency key `<call ID>:send_to_customer:<n>`), so submitting one modal twice sends once."""

    n: int = Field(ge=1, le=10_000)


class ReminderValue(CaseRef):
    """A reminder's controls: the case and the reminder."""

    stale: ClassVar[str] = "That reminder is out of date."
    prefix: ClassVar[str] = "reminder"

    reminder_id: int = Field(ge=1, lt=2**63)

    def block_id(self) -> str:
        # Selects carry no value of their own: the actions block's ID says which reminder they act on.
        return self.key()

    @classmethod
    def from_block_id(cls, block_id: str) -> ReminderValue:
        if not block_id.startswith(f"{cls.prefix}:"):
            raise ValueError("not a reminder block")
        return cls.parse(block_id)

    @classmethod
    def read(cls, action: dict[str, Any]) -> Self:
        """Buttons carry the value; selects carry it in their block's ID."""
        return cls.parse(str(action.get("value") or action.get("block_id") or ""))


class PickValue(CaseRef):
    """A review option: the case and the picked MoonClerk customer, None for "none of these"."""

    stale: ClassVar[str] = "That choice is out of date."

    customer_id: int | None = Field(ge=1, lt=2**63)

    @classmethod
    def read(cls, action: dict[str, Any]) -> Self:
        return cls.parse(str((action.get("selected_option") or {}).get("value") or ""))


# Which value each element carries, so one middleware parses it before any listener runs.
VALUE_OF: Final[dict[str, type[CaseRef]]] = {
    **dict.fromkeys(ActionId, ButtonValue),
    ControlId.CONFIRM_PAYOUT: ButtonValue,
    ControlId.CALLBACK_DONE: ButtonValue,
    ControlId.RETRY_ACTION: ButtonValue,
    ControlId.RECONCILE_ACTION: ButtonValue,
    ControlId.REMINDER_DONE: ReminderValue,
    ControlId.REMINDER_SNOOZE: ReminderValue,
    ControlId.REMINDER_REASSIGN: ReminderValue,
    ControlId.REVIEW_PICK: PickValue,
    CallbackId.INVOICE_POOF: ButtonValue,
    CallbackId.PAYOUT_POOF: ButtonValue,
    CallbackId.REFUND_STRIPE: ButtonValue,
    CallbackId.REMINDER_SNOOZE: ReminderValue,
    CallbackId.REMINDER_DONE: ReminderValue,
    CallbackId.DENY: ButtonValue,
    CallbackId.RESOLVE: ButtonValue,
    CallbackId.SEND_TO_CUSTOMER: MailValue,
}
