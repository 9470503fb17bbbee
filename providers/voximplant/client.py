"""Voximplant Management API (platform_api) client.

One method per provider call, each with its docs link; a few iterators on top (every
child, the whole transaction history of a window). Reads are retried on transient
failures; a write without a usable answer is never resent (see providers/README.md).

The methods live in groups, one module each: ``core`` (the connection, authentication,
the call path and its error mapping), ``accounts`` (child accounts), ``children`` (the walk
over every child), ``money`` (transfers, charges, thresholds), ``history`` (transaction
history) and ``users`` (a child's app users and the money moved to them).
:class:`VoximplantClient` is all of them together.
"""

from __future__ import annotations

from providers.voximplant.accounts import AccountsMixin
from providers.voximplant.accounts import OrderBy as OrderBy
from providers.voximplant.children import ChildrenMixin
from providers.voximplant.core import DEFAULT_BASE_URL as DEFAULT_BASE_URL
from providers.voximplant.core import HISTORY_OFFSET_CAP as HISTORY_OFFSET_CAP
from providers.voximplant.core import MAX_PAGE as MAX_PAGE
from providers.voximplant.core import ChildIds as ChildIds
from providers.voximplant.core import VoximplantCore
from providers.voximplant.history import HistoryMixin
from providers.voximplant.history import logger as logger
from providers.voximplant.money import MoneyMixin
from providers.voximplant.plans import PlansMixin
from providers.voximplant.probe import ProbeMixin
from providers.voximplant.users import UsersMixin

__all__ = ["VoximplantClient"]


class VoximplantClient(
    ChildrenMixin, MoneyMixin, UsersMixin, HistoryMixin, AccountsMixin, PlansMixin, ProbeMixin, VoximplantCore
):
    """Typed client for ``/platform_api/<Method>``.

    ``base_url`` is the API root (``https://api.voximplant.com``; a trailing
    ``/platform_api`` is tolerated). ``credentials`` is the service account used to mint
    JWTs; ``parent_api_key`` is needed only by AddAccount and CloneAccount (legacy
    parent authorisation).
    """
