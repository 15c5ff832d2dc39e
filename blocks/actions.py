"""Action IDs and button values: the contract between the cards and the handlers that answer clicks.

Both are an integration surface. Handlers are registered on these exact strings and old cards stay in
the channel for months, so a value may be renamed only by adding a new one.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from blocks.limits import MAX_BUTTON_VALUE


class ActionId(StrEnum):
    NOTE_MOONCLERK = "note_moonclerk"
    INVOICE_POOF = "invoice_poof"
    PAYOUT_POOF = "payout_poof"
    ROUTE_REVIEW = "route_review"
    ASSIGN_SELF = "assign_self"
    SNOOZE = "snooze"
    DISMISS = "dismiss"


class ButtonValue(BaseModel):
    """What a button click carries back: which case, which call, and which render of the card.

    Never amounts, names or other PII: Slack echoes values in every interaction payload and logs, and
    the handler must read the current case from the database anyway. `v` lets a handler refuse a
    click made on a stale card (the card_version it was rendered from).
    """

    # Unknown keys are refused so nothing else can ride along in a value.
    model_config = ConfigDict(extra="forbid", frozen=True)

    case_id: int = Field(ge=1)
    call_id: str = Field(min_length=1, max_length=255)
    v: int = Field(ge=0)

    def dump(self) -> str:
        value = self.model_dump_json()
        # A guard that survives `python -O`: Slack rejects the whole message over this limit.
        if len(value) > MAX_BUTTON_VALUE:
            raise ValueError(f"button value is {len(value)} characters, limit {MAX_BUTTON_VALUE}")
        return value

    @classmethod
    def parse(cls, value: str) -> ButtonValue:
        return cls.model_validate_json(value)
