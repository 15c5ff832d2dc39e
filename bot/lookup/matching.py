"""Customer matching: how sure are we that a call's caller is a given MoonClerk customer? Pure, no I/O.

Scores are floats in 0..1 (never money). Each customer is scored on its own from independent
signals, each with a fixed weight:

| signal                                                            | weight |
|-------------------------------------------------------------------|--------|
| the MoonClerk customer ID stated on the call is this customer     | 0.95   |
| the Stripe customer reference (`cus_…`) stated on the call        | 0.95   |
| the payment ID stated on the call belongs to this customer        | 0.90   |
| email equal (trimmed, case-insensitive)                           | 0.90   |
| email equal once a `+tag` is dropped                              | 0.80   |
| account / custom ID equal to MoonClerk's `custom_id`              | 0.85   |
| phone (E.164) equal to a phone in the customer's custom fields    | 0.70   |
| name equal (case, accents, punctuation and spacing ignored)       | 0.60   |
| same name words in another order ("Wood, Ryan")                   | 0.55   |
| initial + surname, or one name inside the other ("R. Wood")       | 0.45   |
| near-identical spelling (similarity ≥ 0.85, "Rian Wood")          | 0.40   |

Signals combine as independent evidence (noisy-OR): `1 - Π(1 - wᵢ)`, so two moderate signals make a
strong one (name 0.60 + phone 0.70 → 0.88) and no pile of weak ones ever reaches 1. Contradictions
then scale the score down: an email on file that differs from the caller's (×0.70), a name on file
that shares nothing with the caller's (×0.85). Every signal and penalty is recorded as evidence.

The decision over all candidates:

- **matched**: the best score is ≥ 0.85 and no other candidate is within 0.05 of it;
- **review**: the best score is in 0.5–0.85, or the top candidates tie (within 0.05 of each other,
  both ≥ 0.5): a person picks in the review channel;
- **unmatched**: nothing scores ≥ 0.5 (or nothing on the call identifies a customer).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any, Final

from providers.dialnexa import normalise_phone
from providers.moonclerk import Customer, Payment
from storage.states import MatchStatus

MATCHED: Final = 0.85
REVIEW: Final = 0.5
TIE_MARGIN: Final = 0.05
MAX_CANDIDATES: Final = 10
# Below this a customer is not worth showing anyone as a candidate.
SHOWN: Final = 0.3

W_CUSTOMER_ID: Final = 0.95
W_CUSTOMER_REF: Final = 0.95
W_PAYMENT: Final = 0.90
W_EMAIL: Final = 0.90
W_EMAIL_TAG: Final = 0.80
W_CUSTOM_ID: Final = 0.85
W_PHONE: Final = 0.70
W_NAME_EXACT: Final = 0.60
W_NAME_REORDERED: Final = 0.55
W_NAME_PARTIAL: Final = 0.45
W_NAME_SIMILAR: Final = 0.40
NAME_SIMILARITY: Final = 0.85
P_EMAIL_DIFFERS: Final = 0.70
P_NAME_DIFFERS: Final = 0.85

_CUSTOMER_REF = re.compile(r"cus_[A-Za-z0-9]{1,64}")
_PAYMENT_ID = re.compile(r"[1-9][0-9]{0,17}")


# ---------------------------------------------------------------------------------------------------
# Normalisation


def normalise_email(value: str | None) -> str | None:
    if not value:
        return None
    email = value.strip().lower()
    return email if "@" in email and " " not in email else None


def untagged(email: str) -> str:
    """The address without a `+tag`: "ryan+billing@x.com" → "ryan@x.com"."""
    local, _, domain = email.partition("@")
    return f"{local.split('+', 1)[0]}@{domain}"



def name_words(value: str | None) -> list[str]:
    """Lower-case words without accents or punctuation: "Zoë O'Brien-Smith" → ["zoe", "obrien", "smith"]."""
    if not value:
        return []
    text = unicodedata.normalize("NFKD", value)
    text = "".join(char for char in text if not unicodedata.combining(char)).lower()
    text = re.sub(r"['’`]", "", text)
    return [word for word in re.split(r"[^\w]+|_", text) if word]


def name_score(heard: str | None, on_file: str | None) -> tuple[float, str | None]:
    """How well two names agree, with the reason; (0.0, None) when they do not."""
    a, b = name_words(heard), name_words(on_file)
    if not a or not b:
        return 0.0, None
    if a == b:
        return W_NAME_EXACT, "name matches"
    if sorted(a) == sorted(b):
        return W_NAME_REORDERED, "name matches (words in another order)"
    if len(a) >= 2 and len(b) >= 2:
        short, long = (a, b) if len(a) <= len(b) else (b, a)
        if set(short) <= set(long):
            return W_NAME_PARTIAL, "name matches in part"
        if short[-1] == long[-1] and short[0][:1] == long[0][:1] and (len(short[0]) == 1 or len(long[0]) == 1):
            return W_NAME_PARTIAL, "initial and surname match"
    matcher = SequenceMatcher(None, " ".join(a), " ".join(b))
    # real_quick_ratio and quick_ratio are upper bounds of ratio: most names fail them, cheaply.
    if matcher.real_quick_ratio() >= NAME_SIMILARITY and matcher.quick_ratio() >= NAME_SIMILARITY \
            and matcher.ratio() >= NAME_SIMILARITY:
        return W_NAME_SIMILAR, "name spelt almost the same"
    return 0.0, None


def customer_phones(customer: Customer) -> set[str]:
    """E.164 numbers in the customer's custom fields (MoonClerk has no phone field of its own)."""
    phones: set[str] = set()
    for key, custom in customer.custom_fields.items():
        looks_like_phone = "phone" in key.lower() or "phone" in (custom.type or "").lower()
        if looks_like_phone and isinstance(custom.response, str | int):
            phone = normalise_phone(str(custom.response))
            if phone:
                phones.add(phone)
    return phones


# ---------------------------------------------------------------------------------------------------
# Inputs and outputs


@dataclass(frozen=True)
class CallerFacts:
    """What the call says about who called, normalised for comparison."""

    email: str | None = None
    phone: str | None = None
    name: str | None = None
    custom_id: str | None = None
    customer_id: int | None = None
    customer_reference: str | None = None
    payment_id: int | None = None

    @property
    def empty(self) -> bool:
        return all(value is None for value in self.__dict__.values())

    def fingerprint(self) -> str:
        """A stable digest of the inputs, so a re-run on unchanged facts can be recognised."""
        text = json.dumps(self.__dict__, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @classmethod
    def of(
        cls, *, email: str | None, phone: str | None, name: str | None, account_id: str | None,
        customer_id: int | None, payment_id: str | None,
    ) -> CallerFacts:
        account = (account_id or "").strip() or None
        reference = account if account and _CUSTOMER_REF.fullmatch(account) else None
        payment = (payment_id or "").strip()
        return cls(
            email=normalise_email(email),
            phone=normalise_phone(phone) if phone else None,
            name=" ".join(name_words(name)) or None,
            custom_id=None if reference else account,
            customer_id=customer_id if customer_id and customer_id > 0 else None,
            customer_reference=reference,
            payment_id=int(payment) if _PAYMENT_ID.fullmatch(payment) else None,
        )


@dataclass(frozen=True)
class Scored:
    customer_id: int
    score: float
    evidence: tuple[str, ...]
    name: str | None = None
    email: str | None = None
    custom_id: str | None = None
    status: str | None = None

    def as_candidate(self) -> dict[str, Any]:
        """The JSON stored in Case.match_candidates (no payment data: never card or bank details)."""
        return {"customer_id": self.customer_id, "score": self.score, "evidence": list(self.evidence),
                "name": self.name, "email": self.email, "custom_id": self.custom_id, "status": self.status}


@dataclass(frozen=True)
class MatchResult:
    status: MatchStatus  # matched | review | unmatched
    score: float
    customer_id: int | None
    evidence: tuple[str, ...]
    candidates: tuple[Scored, ...] = field(default_factory=tuple)

    def candidate_dicts(self) -> list[dict[str, Any]]:
        return [candidate.as_candidate() for candidate in self.candidates]


# ---------------------------------------------------------------------------------------------------
# Scoring


def _noisy_or(weights: Iterable[float]) -> float:
    remaining = 1.0
    for weight in weights:
        remaining *= 1.0 - weight
    return 1.0 - remaining


def score_customer(facts: CallerFacts, customer: Customer, payments: Sequence[Payment] = (),
                   phones: Collection[str] | None = None) -> Scored:
    """Score one customer against the call. `payments` are payments the call named that belong to it;
    `phones` the customer's E.164 numbers when already known (a directory row), saving a parse."""
    signals: list[tuple[float, str]] = []
    if facts.customer_id is not None and facts.customer_id == customer.id:
        signals.append((W_CUSTOMER_ID, "MoonClerk customer ID stated on the call"))
    if facts.customer_reference and facts.customer_reference == customer.customer_reference:
        signals.append((W_CUSTOMER_REF, "customer reference stated on the call"))
    for payment in payments:
        if facts.payment_id is not None and payment.id == facts.payment_id and payment.customer_id == customer.id:
            signals.append((W_PAYMENT, f"payment {payment.id} stated on the call belongs to this customer"))
            break
    on_file = normalise_email(customer.email)
    if facts.email and on_file:
        if facts.email == on_file:
            signals.append((W_EMAIL, "email matches"))
        elif untagged(facts.email) == untagged(on_file):
            signals.append((W_EMAIL_TAG, "email matches apart from a +tag"))
    if facts.custom_id and customer.custom_id and facts.custom_id.casefold() == customer.custom_id.strip().casefold():
        signals.append((W_CUSTOM_ID, "account ID matches MoonClerk's custom ID"))
    if facts.phone and facts.phone in (customer_phones(customer) if phones is None else phones):
        signals.append((W_PHONE, "phone matches the customer's phone field"))
    name_weight, name_why = name_score(facts.name, customer.name)
    if name_why:
        signals.append((name_weight, name_why))

    score = _noisy_or(weight for weight, _ in signals)
    evidence = [reason for _, reason in signals]
    if signals:
        if facts.email and on_file and untagged(facts.email) != untagged(on_file):
            score *= P_EMAIL_DIFFERS
            evidence.append("but the email on file differs")
        if facts.name and customer.name and not name_why:
            score *= P_NAME_DIFFERS
            evidence.append("but the name on file differs")
    return Scored(
        customer_id=customer.id, score=round(max(0.0, min(1.0, score)), 3), evidence=tuple(evidence),
        name=customer.name, email=customer.email, custom_id=customer.custom_id, status=customer.status,
    )


def decide(scored: Iterable[Scored]) -> MatchResult:
    """Pick matched / review / unmatched from every customer's score (see the module docstring)."""
    ranked = sorted((s for s in scored if s.score >= SHOWN), key=lambda s: (-s.score, s.customer_id))
    shown = tuple(ranked[:MAX_CANDIDATES])
    if not ranked or ranked[0].score < REVIEW:
        why = ("no MoonClerk customer matches well enough",) if ranked else ("no MoonClerk customer matches",)
        return MatchResult(MatchStatus.UNMATCHED, ranked[0].score if ranked else 0.0, None, why, shown)
    best = ranked[0]
    tied = [s for s in ranked[1:] if best.score - s.score <= TIE_MARGIN and s.score >= REVIEW]
    if best.score >= MATCHED and not tied:
        return MatchResult(MatchStatus.MATCHED, best.score, best.customer_id, best.evidence, shown)
    if tied:
        evidence = (f"{len(tied) + 1} customers match about equally well", *best.evidence)
    else:
        evidence = ("the best match is not certain enough", *best.evidence)
    return MatchResult(MatchStatus.REVIEW, best.score, None, evidence, shown)


def nothing_to_match() -> MatchResult:
    return MatchResult(MatchStatus.UNMATCHED, 0.0, None, ("nothing on the call identifies a customer",))
