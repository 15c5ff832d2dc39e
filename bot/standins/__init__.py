"""Local HTTP stand-ins for Slack, MoonClerk, Poof and Stripe, shared by the tests and `finance-desk demo`."""

from bot.standins.base import Recorded, Reply, StandIn
from bot.standins.moonclerk import MoonClerkStandIn
from bot.standins.poof import PoofStandIn
from bot.standins.slack_api import SlackStandIn
from bot.standins.stripe import StripeStandIn

__all__ = ["MoonClerkStandIn", "PoofStandIn", "Recorded", "Reply", "SlackStandIn", "StandIn", "StripeStandIn"]
