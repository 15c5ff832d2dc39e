"""Is a call about billing, and which kind: the call's own analysis first, then named regex rules.

Everything here reads text that has already been redacted, and every decision names the rule that made
it so a finance reviewer can see why a call landed where it did.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bot.triage import scan
from bot.triage.model import BillingKind, Classification
from providers.dialnexa import is_missing

EVIDENCE_LIMIT = 160

# Analysis keys that may carry the call's purpose, in the order they are trusted: `billing_intent` is the
# field the suggested DialNexa schema (reference §3.3) defines, the rest are what other agents emit.
INTENT_KEYS = ("billing_intent", "intent", "category", "call_type", "reason", "topic", "request_type")

_K = BillingKind
# Enum values from the suggested schema and the spellings other agents' prompts produce. Values such as
# "other", "unknown" or "book_appointment" are deliberately absent: they must not decide anything.
_SYNONYMS: dict[BillingKind, tuple[str, ...]] = {
    _K.REFUND: ("refund_request", "refunds", "request_refund", "refund_requested", "money_back"),
    _K.DISPUTE: (
        "charge_dispute", "dispute_charge", "disputes", "chargeback", "chargebacks", "charge_back", "fraud",
        "fraudulent_charge", "unauthorized_charge", "unauthorised_charge", "dispute_or_chargeback",
    ),
    _K.DOCUMENT_RESEND: (
        "invoice_resend", "resend_invoice", "invoice_request", "receipt", "receipt_request", "statement",
        "statement_request", "tax_form", "document_request", "resend_receipt",
    ),
    _K.FAILED_RENEWAL: (
        "payment_failed", "failed_payment", "renewal_failed", "card_declined", "declined_payment",
        "payment_declined",
    ),
    _K.BILLING_QUESTION: ("billing", "billing_inquiry", "billing_enquiry", "invoice_question", "pricing"),
    _K.TAX_OR_ADDRESS: (
        "address_or_tax_change", "address_change", "billing_address", "tax_change", "tax_question", "vat",
        "tax_exemption",
    ),
    _K.SUBSCRIPTION_CHANGE: (
        "cancel_subscription", "subscription_cancel", "cancellation", "upgrade", "downgrade", "plan_change",
        "change_plan", "pause_subscription",
    ),
    _K.DUPLICATE_CHARGE: ("double_charge", "double_charged", "charged_twice", "duplicate_payment"),
    _K.COLLECTIONS: ("collection", "past_due", "overdue_payment", "overdue", "payment_plan", "debt"),
    _K.PAYMENT_STATUS: ("payment_inquiry", "payment_confirmation"),
    _K.PAYOUT_REQUEST: (
        "payout", "payouts", "payout_requested", "request_payout", "commission_payout", "affiliate_payout",
        "partner_payout", "referral_payout", "crypto_payout", "withdrawal", "withdrawal_request", "withdraw_funds",
    ),
}
INTENT_VALUES: dict[str, BillingKind] = {
    **{kind.value: kind for kind in BillingKind if kind is not BillingKind.NOT_BILLING},
    **{value: kind for kind, values in _SYNONYMS.items() for value in values},
}

ANALYSIS_CONFIDENCE = 0.93
INFERRED_CONFIDENCE = 0.85
INFERRED_GENERIC_CONFIDENCE = 0.75
NOT_BILLING_CONFIDENCE = 0.65
NO_TEXT_CONFIDENCE = 0.3
# A rule seen only in the transcript is weaker: agents read out menus and callers think aloud.
TRANSCRIPT_ONLY_PENALTY = 0.15
BOTH_BONUS = 0.05


@dataclass(frozen=True)
class Rule:
    name: str
    kind: BillingKind
    pattern: Any  # re2: group 1 a negation before the term, group 2 the term, group 3 a `skip` (see _rule)
    confidence: float  # when it fires in the summary
    generic: bool = False  # catch-all terms: lose to any specific rule wherever that one fired
    skips: bool = False  # has a `skip` alternative
    # Words (lower case) of which every match of the term holds one: a text that has none is passed over
    # with C-speed substring tests instead of a search (see scan.Text.mentions).
    needs: tuple[str, ...] = ()
    term: str = ""  # the term's own pattern, without the negation and `skip` around it


# "my invoice" from the caller, "their invoice" from the summary, "the invoice" from either.
_DET = r"(?:my|our|the|their|his|her|its|this|that|a|an|another|your)"

# Only the few words right before a match, in the same clause, count as negating it: enough for
# "this is not about billing" or "no refund needed" without pretending to parse English. The negation is
# matched as an optional prefix of every rule (re2 has no lookbehind): a match that carries it is skipped.
# Its gaps never cross a line break, which ends a clause; the other clause breaks (.,;:!? and "but")
# cannot occur inside it at all.
_GAP = r"[ \t\r\f\v]"
_NEGATION = (
    r"\b(?:not|no|never|nothing" + _GAP + r"+to" + _GAP + r"+do" + _GAP + r"+with"
    r"|(?:don't|do" + _GAP + r"+not|doesn't|does" + _GAP + r"+not)" + _GAP + r"+(?:need|want))"
    r"(?:" + _GAP + r"+(?:about|regarding|related" + _GAP + r"+to|a|an|the|my|any|for|to|asking|calling|really))*"
    + _GAP + r"*"
)
# How far back a negation may start: the old clause window.
NEGATION_WINDOW = 60
# A rule gives up on a text after this many negated or skipped mentions: no call says "no refund" a
# thousand times, and a body built that way must not cost a regex match per mention.
MAX_TAKEN_BACK = 1000


def _rule(
    name: str, kind: BillingKind, pattern: str, confidence: float = 0.8, *, needs: tuple[str, ...],
    generic: bool = False, skip: str | None = None,
) -> Rule:
    """`skip` is what a lookbehind used to refuse ("bank statement"): matched from where the lookbehind
    began looking, so it starts first and wins; a match that took it is ignored. `needs`: see Rule
    (tests/test_classify.py checks them against matches generated from the pattern)."""
    term = pattern.replace("{D}", _DET)
    body = term if skip is None else f"(?P<skip>{skip})|{term}"
    compiled = scan.compile(f"(?P<neg>{_NEGATION})?(?P<term>{body})", ignore_case=True)
    return Rule(f"rules.{name}", kind, compiled, confidence, generic, skip is not None, needs, term)


# Priority order: when several rules fire in the same place, the first one wins. Specific money
# problems come before the refund they usually lead to, so "charged twice, want a refund" is a
# duplicate charge.
RULES: list[Rule] = [
    _rule(
        "duplicate_charge",
        _K.DUPLICATE_CHARGE,
        # Up to a few words between, "." only inside a number: "charged $49.99 twice".
        r"\b(?:charged|billed)\b(?:[^.?!\n]|\.\d){0,30}?\b(?:twice|two\s+times|double|more\s+than\s+once)\b"
        r"|\bdouble[\s-]?(?:charged|billed|charge|charges)\b"
        r"|\bduplicate\s+(?:charges?|payments?|transactions?|billing)\b",
        0.85,
        needs=("charged", "billed", "double", "duplicate"),
    ),
    _rule(
        "dispute",
        _K.DISPUTE,
        r"\bcharge[\s-]?backs?\b|\bdisput(?:e|es|ed|ing)\b"
        r"|\b(?:didn't|did\s+not|never)\s+authori[sz](?:e|ed)\b"
        r"|\bfraudulent\s+(?:charges?|transactions?|payments?)\b"
        r"|\bunauthori[sz]ed\s+(?:charges?|transactions?|payments?)\b"
        r"|\b(?:don't|do\s+not|doesn't|does\s+not|didn't)\s+recogni[sz]e\s+{D}\s+(?:charge|transaction|payment)\b",
        0.85,
        needs=("charge", "disput", "authori", "fraudulent", "recogni"),
    ),
    _rule(
        "failed_renewal",
        _K.FAILED_RENEWAL,
        r"\brenewal\s+(?:has\s+|had\s+)?failed\b|\bfailed\s+(?:renewal|payment|charge)s?\b"
        r"|\bpayment\s+(?:has\s+|had\s+)?failed\b"
        r"|\bcard\s+(?:was\s+|got\s+|is\s+being\s+|keeps\s+getting\s+)?declined\b"
        r"|\b(?:couldn't|could\s+not|can't|cannot|unable\s+to)\s+renew\b|\bsubscription\s+(?:has\s+)?lapsed\b"
        r"|\bpayment\s+(?:didn't|did\s+not|won't|will\s+not)\s+go\s+through\b",
        needs=("failed", "declined", "renew", "lapsed", "through"),
    ),
    _rule(
        "collections",
        _K.COLLECTIONS,
        r"\bpast[\s-]due\b|\boverdue\s+(?:balance|invoices?|payments?|amount|bill)\b|\bcollections\b"
        r"|\bcollection\s+(?:agency|agencies|notice|letter|call)s?\b|\bin\s+collection\b"
        r"|\bpayment\s+plan\b|\b(?:i|we|they|he|she)\s+owes?\b|\bowes?\s+(?:you|us|money)\b",
        needs=("due", "collection", "plan", "owe"),
    ),
    _rule(
        "refund",
        _K.REFUND,
        r"\brefund(?:s|ed|ing)?\b|\bmoney\s+back\b|\breimburs(?:e|ed|ement)\b",
        needs=("refund", "back", "reimburs"),
    ),
    _rule(
        "payout_request",
        _K.PAYOUT_REQUEST,
        # Money the business owes a partner or affiliate, paid out in fiat or crypto.
        r"\bpay[\s-]?outs?\b|\bpaid\s+out\b|\bpay\s+(?:me|us|them|him|her)\s+out\b"
        r"|\b(?:commissions?|affiliate|referral|partner)\s+(?:payments?|earnings|payouts?|balance|fees?)\b"
        r"|\b(?:my|our|their|his|her|unpaid|outstanding|owed)\s+commissions?\b"
        r"|\bwithdraw(?:al|als|ing|n)?\b[^.?!\n]{0,30}\b(?:funds|balance|earnings|commissions?|usdc|usdt|crypto|wallet)\b",
        skip=r"\bpa(?:y|id)[\s-]?out\s+of\b",  # "paid out of pocket"
        needs=("out", "commission", "affiliate", "referral", "partner", "withdraw"),
    ),
    _rule(
        "document_resend",
        _K.DOCUMENT_RESEND,
        r"\bre-?sen[dt]\b[^.?!\n]{0,30}\b(?:invoice|receipt|statement|bill|copy|document|credit\s+note|tax\s+form)s?\b"
        r"|\bsend\s+(?:me\s+|us\s+|them\s+|him\s+|her\s+)?{D}\s+(?:new\s+)?(?:copy|receipt|invoice|statement|credit\s+note)\b"
        r"|\bcopy\s+of\s+{D}\s+(?:invoice|receipt|statement|bill)\b"
        r"|\bstatements?\b|\btax\s+forms?\b|\bw-?9\b|\b1099\b"
        r"|\b(?:didn't|did\s+not|never)\s+(?:get|receive[d]?)\s+{D}\s+(?:invoice|receipt)\b",
        skip=r"(?:bank|card)\sstatements?\b",
        needs=("sen", "copy", "statement", "form", "w9", "w-9", "1099", "invoice", "receipt"),
    ),
    _rule(
        "tax_or_address",
        _K.TAX_OR_ADDRESS,
        r"\bbilling\s+address\b|\bvat\s+(?:number|id|registration)\b|\btax[\s-]exempt(?:ion)?\b"
        r"|\b(?:change|update|correct)\s+{D}\s+(?:billing\s+|company\s+)?address\b|\bsales\s+tax\b"
        r"|\b(?:vat|gst)\b",
        needs=("address", "vat", "tax", "gst"),
    ),
    _rule(
        "subscription_change",
        _K.SUBSCRIPTION_CHANGE,
        r"\bcancel(?:l?ing|l?ed|s)?\s+{D}\s+(?:subscription|membership|plan)\b"
        r"|\b(?:upgrad|downgrad)(?:e|ed|es|ing)\b[^.?!\n]{0,40}\b(?:plan|subscription|tier|membership|package)\b"
        r"|\b(?:plan|subscription|tier)\b[^.?!\n]{0,40}\b(?:upgrad|downgrad)(?:e|ed|es|ing)\b"
        r"|\bchange\s+{D}\s+(?:plan|subscription)\b|\bswitch\s+(?:to\s+)?{D}\s+\w+\s+plan\b"
        r"|\bpause\s+{D}\s+subscription\b",
        needs=("cancel", "grad", "change", "switch", "pause"),
    ),
    _rule(
        "payment_status",
        _K.PAYMENT_STATUS,
        r"\bdid\s+{D}\s+payment\s+go\s+through\b|\bpayment\s+status\b"
        r"|\bpayment\s+(?:went|has\s+gone|had\s+gone)\s+through\b"
        r"|\bha(?:s|ve)\s+{D}\s+payments?\s+(?:been\s+)?(?:received|processed|cleared|posted|gone\s+through|arrived)\b"
        r"|\bstatus\s+of\s+{D}\s+payment\b|\bcheck(?:ing)?\s+on\s+{D}\s+payment\b"
        r"|\b(?:was|were)\s+{D}\s+payments?\s+received\b|\b(?:whether|if)\s+{D}\s+payment\b",
        needs=("payment",),
    ),
    _rule(
        "billing_question",
        _K.BILLING_QUESTION,
        r"\binvoic(?:e|es|ed|ing)\b|\b(?:{D}|last|monthly|next|latest)\s+bill\b"
        r"|\bbills\b|\bbill(?:ed|ing)\b|\bcharge[sd]?\b|\bpayments?\b|\bpricing\b|\baccount\s+balance\b",
        0.6,
        generic=True,
        skip=r"in\scharge[sd]?\b",
        needs=("invoic", "bill", "charge", "payment", "pricing", "balance"),
    ),
]

# "$49.99" and "INV-1042.5" are not sentence ends; a stop followed by whitespace or the end is.
_SENTENCE_END = scan.compile(r"[.!?](?:\s|$)|\n")
# Evidence is cut from at most this many bytes either side of a match: a sentence longer than that is
# cut around the match anyway, so nothing further away can change the snippet.
_EVIDENCE_REACH = 4 * 2 * EVIDENCE_LIMIT
_SLUG_SEPARATORS = str.maketrans(dict.fromkeys("-/.", " "))


def classify(analysis: dict[str, Any], summary: str | None, transcript: str) -> Classification:
    analysis = analysis if isinstance(analysis, dict) else {}
    flat = _normalised_keys(analysis)
    decided = _from_intent(flat)
    if decided is not None:
        return decided
    inferred = _from_fields(flat)
    from_rules = _from_rules(summary or "", transcript or "")
    if inferred is None:
        return from_rules
    # Invoice-and-amount only says "billing"; the words of the call can say which kind.
    if inferred.kind is BillingKind.BILLING_QUESTION and from_rules.kind not in {
        BillingKind.BILLING_QUESTION,
        BillingKind.NOT_BILLING,
    }:
        return from_rules
    return inferred


def _normalised_keys(analysis: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in analysis.items():
        if isinstance(key, str):
            flat.setdefault(_slug(key), value)
    return flat


def _slug(text: str) -> str:
    # `re.sub(r"[\s\-/.]+", "_", …)` at C speed: str.split() already splits on runs of whitespace.
    return "_".join(text.strip().lower().translate(_SLUG_SEPARATORS).split()).strip("_")


def _from_intent(flat: dict[str, Any]) -> Classification | None:
    values = [(key, flat[key].strip()) for key in INTENT_KEYS if isinstance(flat.get(key), str)]
    values = [(key, value) for key, value in values if not is_missing(value)]
    for key, value in values:
        kind = INTENT_VALUES.get(_slug(value))
        if kind is not None:
            return Classification(
                kind=kind,
                rule=f"analysis.{key}={_slug(value)}",
                confidence=ANALYSIS_CONFIDENCE,
                source="analysis",
                evidence=_clip(f"{key}: {value}"),
            )
    # Only when no key holds a known value: free text such as `reason: "customer was charged twice"`.
    for key, value in values:
        text = scan.Text(value)
        match = _first_specific_rule(text) if " " in value else None
        if match is not None:
            rule, found = match
            return Classification(
                kind=rule.kind,
                rule=f"analysis.{key}~{rule.name}",
                confidence=INFERRED_CONFIDENCE,
                source="analysis",
                evidence=_snippet(text, found),
            )
    return None


def _from_fields(flat: dict[str, Any]) -> Classification | None:
    """No intent, but the analysis filled in fields only a billing call has."""
    for key, default in (("dispute_reason", BillingKind.DISPUTE), ("refund_reason", BillingKind.REFUND)):
        value = flat.get(key)
        if is_missing(value) or isinstance(value, bool):
            continue
        text = str(value).strip()
        kind = default
        match = _first_specific_rule(scan.Text(text))
        # "refund_reason: duplicate charge" is a duplicate charge: the same priority the rules use.
        if match is not None and RULES.index(match[0]) < RULES.index(_rule_for(default)):
            kind = match[0].kind
        return Classification(
            kind=kind,
            rule=f"analysis.{key}",
            confidence=INFERRED_CONFIDENCE,
            source="analysis",
            evidence=_clip(f"{key}: {text}"),
        )
    if _truthy(flat.get("credit_request")):
        return Classification(
            kind=BillingKind.REFUND,
            rule="analysis.credit_request",
            confidence=INFERRED_GENERIC_CONFIDENCE,
            source="analysis",
            evidence=_clip(f"credit_request: {flat['credit_request']}"),
        )
    for key in ("invoice_number", "invoice", "invoice_id", "payment_id", "subscription_id"):
        if not is_missing(flat.get(key)) and not is_missing(flat.get("amount")):
            return Classification(
                kind=BillingKind.BILLING_QUESTION,
                rule=f"analysis.{key}",
                confidence=INFERRED_GENERIC_CONFIDENCE,
                source="analysis",
                evidence=_clip(f"{key}: {flat[key]}, amount: {flat['amount']}"),
            )
    return None


_FALSE_WORDS = frozenset({"no", "false", "n", "0", "none", "not_requested"})


def _truthy(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | Decimal | float):
        # NaN is neither a request nor a refusal, and comparing a signalling NaN raises.
        return not (isinstance(value, Decimal) and value.is_nan()) and value > 0
    if isinstance(value, str):
        return not is_missing(value) and _slug(value) not in _FALSE_WORDS
    return False


def _rule_for(kind: BillingKind) -> Rule:
    return next(rule for rule in RULES if rule.kind is kind)


def _first_specific_rule(text: scan.Text) -> tuple[Rule, Span] | None:
    masked = _masked(text)
    for rule in RULES:
        if rule.generic:
            continue
        found = _find(rule, text, masked)
        if found is not None:
            return rule, found
    return None


def kinds_in(text: str) -> list[BillingKind]:
    """Every kind a specific rule finds in the text, in rule order: the call's other signals beside its
    primary kind (a refund whose reason says "duplicate charge" is a duplicate charge too)."""
    source = scan.Text(text)
    masked = _masked(source)
    kinds: list[BillingKind] = []
    for rule in RULES:
        if not rule.generic and rule.kind not in kinds and _find(rule, source, masked) is not None:
            kinds.append(rule.kind)
    return kinds


def _from_rules(summary: str, transcript: str) -> Classification:
    best: tuple[tuple[int, int], Classification] | None = None
    summary_text, transcript_text = scan.Text(summary), scan.Text(transcript)
    masked_summary, masked_transcript = _masked(summary_text), _masked(transcript_text)
    for index, rule in enumerate(RULES):
        in_summary = _find(rule, summary_text, masked_summary)
        in_transcript = _find(rule, transcript_text, masked_transcript)
        if in_summary is None and in_transcript is None:
            continue
        if in_summary is not None:
            confidence = rule.confidence + (BOTH_BONUS if in_transcript is not None else 0.0)
            evidence = _snippet(summary_text, in_summary)
        else:
            assert in_transcript is not None
            confidence = rule.confidence - TRANSCRIPT_ONLY_PENALTY
            evidence = _snippet(transcript_text, in_transcript)
        # Specific-in-summary beats specific-in-transcript beats any generic match; then list order.
        tier = 2 if rule.generic else (0 if in_summary is not None else 1)
        candidate = Classification(
            kind=rule.kind,
            rule=rule.name,
            confidence=round(min(max(confidence, 0.0), 1.0), 2),
            source="rules",
            evidence=evidence,
        )
        if best is None or (tier, index) < best[0]:
            best = ((tier, index), candidate)
    if best is not None:
        return best[1]
    has_text = bool(summary.strip() or transcript.strip())
    return Classification(
        kind=BillingKind.NOT_BILLING,
        rule="rules.no_billing_terms",
        confidence=NOT_BILLING_CONFIDENCE if has_text else NO_TEXT_CONFIDENCE,
        source="none",
        evidence=None,
    )


# A match as byte offsets into the text's UTF-8 form (scan.Text.data).
Span = tuple[int, int]


def _masked(text: scan.Text) -> bytes:
    """The text with redaction markers blanked to as many spaces as they have bytes, so "[redacted
    card_number]" cannot read as a payment term while evidence is still cut from the original text at
    the same offsets."""
    if "[" not in text.text:
        return text.data  # nothing to blank: the same bytes, not encoded a second time
    masked = scan.replace_brackets(text.text, lambda marker: " " * len(marker.encode("utf-8", "replace")))
    return masked.encode("utf-8", "replace")


def _find(rule: Rule, text: scan.Text, masked: bytes) -> Span | None:
    """The rule's first match in `masked` (the text, markers blanked) that no negation in its clause takes back."""
    if rule.needs and not text.mentions(*rule.needs):
        return None
    for count, found in enumerate(rule.pattern.finditer(masked)):
        if count >= MAX_TAKEN_BACK:
            return None
        term_start, term_end = found.span(2)
        if rule.skips and found.start(3) != -1:
            continue
        if found.start(1) != -1 and term_start - found.start(1) <= NEGATION_WINDOW:
            continue
        return term_start, term_end
    return None


def _snippet(text: scan.Text, found: Span) -> str:
    """The sentence around a match, cut down around the match if the sentence is long."""
    # Work on a window around the match: a sentence reaching beyond it is long, and is cut anyway.
    window_start = max(0, found[0] - _EVIDENCE_REACH)
    window_end = min(len(text), found[1] + _EVIDENCE_REACH)
    window = text.slice(window_start, window_end)
    start = len(text.slice(window_start, found[0]))
    end = start + len(text.slice(found[0], found[1]))
    sentence_start = 0
    # A copy, not endpos: `$` must match where the match begins, as Python's endpos made it.
    for boundary in _SENTENCE_END.finditer(window[:start]):
        # The whitespace after a stop belongs to the next sentence (it is stripped away there).
        sentence_start = boundary.start() + 1
    after = _SENTENCE_END.search(window, end)
    bounded = (window_start == 0 or sentence_start > 0) and (after is not None or window_end == len(text))
    sentence = window[sentence_start : after.start() + 1 if after else len(window)].strip()
    if bounded and len(sentence) <= EVIDENCE_LIMIT:
        return sentence
    half = (EVIDENCE_LIMIT - (end - start)) // 2
    left = max(0, start - half)
    return _clip(window[left : left + EVIDENCE_LIMIT].strip())


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EVIDENCE_LIMIT else text[: EVIDENCE_LIMIT - 1].rstrip() + "…"
