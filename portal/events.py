"""Publishing work after a database commit.

A service that writes a row and then queues a task for it must queue the task only once
the row is committed (a worker must never find the row missing), and a broker that is
unreachable at that moment must never turn the committed write into an error for the
caller: the row is durable, and a periodic sweep or the next change picks the work up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import transaction

logger = logging.getLogger("portal.events")


def publish_on_commit(publish: Callable[[], object], *, what: str, using: str | None = None) -> None:
    """Run ``publish`` once the current transaction commits (at once when none is open).

    The callback is registered with ``transaction.on_commit(..., robust=True)``: if it raises,
    Django logs the error (logger ``django.db.backends.base``, naming ``what``) and the
    commit, the other callbacks and the caller carry on. It is dropped with the transaction
    on a rollback. ``what`` says what is published, e.g. ``"billing.transfer_execute 42"``.
    """

    def callback() -> None:
        publish()

    callback.__qualname__ = callback.__name__ = f"publish({what})"
    transaction.on_commit(callback, using=using, robust=True)
