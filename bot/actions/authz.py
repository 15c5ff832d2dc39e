"""Who may act: approvers and senior approvers from the policy, user groups resolved through Slack."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Final

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from blocks.actions import ActionId, CallbackId, ControlId, SlashCommand
from bot.policy import People, Policy

log = logging.getLogger(__name__)

GROUP_CACHE_SECONDS = 300.0

# Every interaction that changes a case is finance people's only: the card's buttons, the thread and
# ledger controls, reminders, review picks, the modals they open, and the /finance command. Only
# Home's link to the review queue is open. Stricter rules (approvers, seniors) apply on top, per action.
FINANCE_ONLY: Final = frozenset({*ActionId, *(set(ControlId) - {ControlId.HOME_OPEN_REVIEW}), *CallbackId,
                                 SlashCommand.FINANCE})
FINANCE_ONLY_REASON: Final = "only finance people (approvers or the default finance owner) may do this"


class Directory:
    """Answers "is this user an approver / a senior approver?", caching user group members briefly."""

    def __init__(self, policy: Policy, client: WebClient | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.client = client
        self.clock = clock
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def _members(self, group: str) -> frozenset[str]:
        with self._lock:
            cached = self._groups.get(group)
            if cached and self.clock() - cached[0] < GROUP_CACHE_SECONDS:
                return cached[1]
        if self.client is None:
            return frozenset()
        try:
            members: list[str] = self.client.usergroups_users_list(usergroup=group).get("users", [])
            users = frozenset(members)
        except SlackApiError as exc:
            # Failing closed: an unreadable group grants nobody anything.
            log.warning("could not read user group %s: %s", group, exc.response.get("error"))
            return frozenset()
        with self._lock:
            self._groups[group] = (self.clock(), users)
        return users

    def _in(self, people: People, user: str) -> bool:
        return user in people.users or any(user in self._members(group) for group in people.user_groups)

    def is_senior(self, user: str) -> bool:
        return self._in(self.policy.senior_approvers, user)

    def is_approver(self, user: str) -> bool:
        return self._in(self.policy.approvers, user) or self.is_senior(user)

    def is_finance(self, user: str) -> bool:
        """Finance people: approvers, senior approvers and the default finance owner."""
        return user == self.policy.default_finance_owner or self.is_approver(user)


def refusal(directory: Directory, user: str, amount: Decimal | None, currency: str | None) -> str | None:
    """Why `user` may not run a money action for this amount, or None when they may."""
    if not directory.is_approver(user):
        return "only finance approvers named in the policy file can run this action"
    reason = directory.policy.senior_reason(amount, currency)
    if reason and not directory.is_senior(user):
        return f"{reason}; a senior approver must do it"
    return None


def permits(directory: Directory, user: str, interaction: str) -> bool:
    """Whether `user` may use `interaction` (an action ID, control ID or slash command) at all."""
    return interaction not in FINANCE_ONLY or directory.is_finance(user)
