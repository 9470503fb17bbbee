"""Resolving transfers whose outcome is not known, and the sweeper.

An unknown transfer is resolved by looking its payment_reference up in the provider's
history: the provider shows it once with the same amount → succeeded; it shows something
else → needs_review; it shows nothing → counted only once the settle window has passed since
the last send, and two such empty lookups lead to a resend with the same reference and
duplicate window (the provider's own duplicate check then guards the resend). Staff settle
what the portal cannot decide (docs/money.md, "Unknown outcomes").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from billing import conf
from billing import provider as prov
from billing.models import Transfer
from billing.money import clean_text
from billing.transitions import (
    Actor,
    Audit,
    assert_no_transaction,
    backoff,
    dispatch_execute,
    dispatch_reconcile,
    error_text,
    expire_lease,
    finish_failure,
    finish_success,
    require_move_money,
    to_review,
    transition,
    with_db_retry,
)
from portal.errors import Conflict, PortalError
from providers.errors import ProviderError

logger = logging.getLogger("billing.transfers")

State = Transfer.State


def _lookup(transfer: Transfer, now: datetime) -> list[prov.Found]:
    """The provider's record of this transfer, found by its payment reference."""
    return prov.lookup_transfer(
        transfer.connection,
        direction=transfer.direction,
        payment_reference=transfer.payment_reference,
        dup_check_from=transfer.dup_check_from,
        now=now,
        child_account_id=int(transfer.child_account_id),
        user_id=int(transfer.provider_user_id) if transfer.provider_user_id is not None else None,
    )


def _evidence(found: list[prov.Found]) -> dict[str, Any]:
    return {
        "provider_transactions": [
            {
                "transaction_id": f.transaction_id,
                "amount": str(f.amount),
                "currency": f.currency,
                "performed_at": f.performed_at.isoformat(),
                "type": f.transaction_type,
                "account_id": f.account_id,
            }
            for f in found
        ]
    }


def transfer_reconcile(*, transfer_id: int, now: datetime | None = None) -> Transfer:
    """Resolve an unknown transfer by looking its reference up in the provider's history;
    only two empty lookups (each at least the settle window after the last send) lead to a
    resend with the same reference and duplicate window."""
    now = now or timezone.now()
    transfer = Transfer.objects.select_related("connection").get(pk=transfer_id)
    if transfer.state == State.SENDING and transfer.lease_until is not None and transfer.lease_until < now:
        expiring = transfer
        with_db_retry(lambda: expire_lease(expiring, now), what="expiring a lease")
        transfer = Transfer.objects.select_related("connection").get(pk=transfer_id)
    if transfer.state != State.UNKNOWN or transfer.next_attempt_at > now:
        return transfer
    attempt, empties = transfer.attempt, transfer.empty_lookups
    assert_no_transaction()
    try:
        found = _lookup(transfer, now)
    except ProviderError as exc:
        delay = backoff(empties + 1)
        transition(
            transfer,
            to=State.UNKNOWN,
            from_states=[State.UNKNOWN],
            attempt=attempt,
            now=now,
            fields={
                "next_attempt_at": now + timedelta(seconds=delay),
                "last_error": f"lookup failed: {error_text(exc)}"[:1000],
            },
            publish=lambda: dispatch_reconcile(transfer.pk, countdown=delay),
        )
        return Transfer.objects.get(pk=transfer_id)
    if len(found) == 1 and found[0].amount == transfer.amount:
        with_db_retry(
            lambda: finish_success(
                transfer,
                attempt,
                from_states=[State.UNKNOWN],
                now=now,
                balance_after=None,
                provider_txn_id=found[0].transaction_id,
                evidence=_evidence(found),
                note="found in the provider's history",
            ),
            what="recording a lookup",
        )
        return Transfer.objects.get(pk=transfer_id)
    if found:
        reason = (
            f"{len(found)} provider transactions carry this reference"
            if len(found) > 1
            else f"the provider moved {found[0].amount}, the portal asked for {transfer.amount}"
        )
        to_review(
            transfer, from_states=[State.UNKNOWN], attempt=attempt, reason=reason, now=now, evidence=_evidence(found)
        )
        return Transfer.objects.get(pk=transfer_id)
    # Nothing found. Believe it only once the provider has had time to show the transfer.
    settle = conf.settle()
    if transfer.last_sent_at is not None and now - transfer.last_sent_at < settle:
        transition(
            transfer,
            to=State.UNKNOWN,
            from_states=[State.UNKNOWN],
            attempt=attempt,
            now=now,
            fields={"next_attempt_at": transfer.last_sent_at + settle},
        )
        return Transfer.objects.get(pk=transfer_id)
    if transfer.first_unknown_at is not None and now - transfer.first_unknown_at > conf.unknown_review_after():
        to_review(
            transfer,
            from_states=[State.UNKNOWN],
            attempt=attempt,
            now=now,
            reason="still unresolved after the review deadline; nothing found at the provider",
        )
        return Transfer.objects.get(pk=transfer_id)
    if empties + 1 < 2:
        transition(
            transfer,
            to=State.UNKNOWN,
            from_states=[State.UNKNOWN],
            attempt=attempt,
            now=now,
            where=Q(empty_lookups=empties),
            fields={"empty_lookups": empties + 1, "next_attempt_at": now + settle},
            audit=Audit(
                action="billing.transfer.lookup_empty",
                data={"transfer": str(transfer.uuid), "attempt": attempt, "lookups": empties + 1},
            ),
            publish=lambda: dispatch_reconcile(transfer.pk, countdown=settle.total_seconds() or None),
        )
        return Transfer.objects.get(pk=transfer_id)
    if transfer.refused_after_unknown:
        # The last attempt was refused outright, but an earlier one went unanswered, and a
        # provider's history can lag by longer than any window the portal waits: empty
        # lookups cannot prove that attempt did nothing. A person decides (the manual
        # "failed" needs the same evidence, plus their judgement), never the worker.
        to_review(
            transfer,
            from_states=[State.UNKNOWN],
            attempt=attempt,
            now=now,
            reason=(
                "the provider refused the last attempt after an earlier one went unanswered, and its "
                "history shows nothing yet; check the child's history before marking it failed"
            ),
        )
        return Transfer.objects.get(pk=transfer_id)
    if attempt >= conf.max_attempts():
        to_review(
            transfer,
            from_states=[State.UNKNOWN],
            attempt=attempt,
            now=now,
            reason=f"not found at the provider after {attempt} attempts",
        )
        return Transfer.objects.get(pk=transfer_id)
    transition(
        transfer,
        to=State.RESEND,
        from_states=[State.UNKNOWN],
        attempt=attempt,
        now=now,
        where=Q(empty_lookups=empties),
        fields={"empty_lookups": empties + 1, "next_attempt_at": now},
        audit=Audit(
            action="billing.transfer.resend",
            data={
                "transfer": str(transfer.uuid),
                "attempt": attempt,
                "reason": "two empty lookups after the settle window",
            },
        ),
        publish=lambda: dispatch_execute(transfer.pk),
    )
    return Transfer.objects.get(pk=transfer_id)


# -- sweeper -----------------------------------------------------------------------------------


def transfer_sweep(*, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Re-dispatch what fell through the cracks: pending rows never picked up (a publish lost
    with the broker), due resends and retries, expired leases (a worker killed before or
    after its provider call) and due lookups. Dispatching twice is harmless: the claim
    admits one worker."""
    now = now or timezone.now()
    counts = {"pending": 0, "resend": 0, "expired": 0, "unknown": 0}
    approved = Q(requires_approval=False) | Q(approved_at__isnull=False)
    pending = list(
        Transfer.objects.filter(approved, state=State.PENDING, next_attempt_at__lte=now - conf.pending_grace())
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    # Retries scheduled by backoff are due at next_attempt_at, not grace later.
    pending += list(
        Transfer.objects.filter(approved, state=State.PENDING, attempt__gt=0, next_attempt_at__lte=now)
        .exclude(pk__in=pending)
        .values_list("pk", flat=True)[:limit]
    )
    for pk in pending:
        dispatch_execute(pk)
    counts["pending"] = len(pending)
    resend = list(
        Transfer.objects.filter(state=State.RESEND, next_attempt_at__lte=now).values_list("pk", flat=True)[:limit]
    )
    for pk in resend:
        dispatch_execute(pk)
    counts["resend"] = len(resend)
    for transfer in Transfer.objects.filter(state=State.SENDING, lease_until__lt=now)[:limit]:
        if expire_lease(transfer, now):
            counts["expired"] += 1
    unknown = list(
        Transfer.objects.filter(state=State.UNKNOWN, next_attempt_at__lte=now).values_list("pk", flat=True)[:limit]
    )
    for pk in unknown:
        dispatch_reconcile(pk)
    counts["unknown"] = len(unknown)
    if any(counts.values()):
        logger.info("transfer sweep: %s", counts)
    return counts


# -- human resolution ---------------------------------------------------------------------------

#: Empty history lookups that prove a sent transfer did not move money (as for the sweeper).
EMPTY_LOOKUPS_NEEDED = 2


@dataclass(frozen=True)
class FailedEvidence:
    """What is known, and what is still missing, before staff may mark a transfer failed.

    The same evidence the automatic path needs: the settle window has passed since the last
    send, no worker holds a live lease, and two lookups found nothing. The lookup made when
    staff resolve it counts as the last of the two, so ``empty_lookups`` (those already
    recorded) must reach one less."""

    sent: bool
    settle_ends_at: datetime | None
    settle_passed: bool
    lease_until: datetime | None
    lease_held: bool
    empty_lookups: int
    needed: int = EMPTY_LOOKUPS_NEEDED

    @property
    def lookups_enough(self) -> bool:
        return not self.sent or self.empty_lookups + 1 >= self.needed

    @property
    def complete(self) -> bool:
        return not self.sent or (self.settle_passed and not self.lease_held and self.lookups_enough)

    @property
    def missing(self) -> list[str]:
        """What still stands in the way, in words for the staff page and the refusal."""
        if not self.sent:
            return []
        out = []
        if not self.settle_passed and self.settle_ends_at is not None:
            out.append(f"the settle window ends at {self.settle_ends_at:%H:%M:%S} UTC")
        if self.lease_held and self.lease_until is not None:
            out.append(f"the lease is held by a worker until {self.lease_until:%H:%M:%S} UTC")
        if not self.lookups_enough:
            out.append(
                f"{self.empty_lookups} of {self.needed} empty lookups recorded; the lookup made when "
                f"you resolve counts as one, so {self.needed - 1 - self.empty_lookups} more must come first "
                '(choose "look it up again" and wait for the result)'
            )
        return out


def failed_evidence(transfer: Transfer, now: datetime | None = None) -> FailedEvidence:
    now = now or timezone.now()
    sent = transfer.attempt > 0 or transfer.last_sent_at is not None
    settle_ends_at = transfer.last_sent_at + conf.settle() if transfer.last_sent_at is not None else None
    return FailedEvidence(
        sent=sent,
        settle_ends_at=settle_ends_at,
        settle_passed=settle_ends_at is None or now >= settle_ends_at,
        lease_until=transfer.lease_until,
        lease_held=transfer.lease_until is not None and transfer.lease_until > now,
        empty_lookups=transfer.empty_lookups,
    )


def transfer_resolve(
    *,
    actor: Actor,
    transfer: Transfer,
    outcome: str,
    note: str,
    request: HttpRequest | None = None,
    now: datetime | None = None,
) -> Transfer:
    """Staff settle a transfer that needs review. ``recheck`` looks it up again;
    ``succeeded`` needs the provider to show the money moved; ``failed`` needs the evidence
    the automatic path needs (``failed_evidence``: settle window passed, no live lease, two
    empty lookups, the fresh one made here being the last), so nothing is ever marked
    failed that the provider may have applied."""
    require_move_money(actor)
    note = clean_text(note, field="note", max_length=1000)
    transfer.refresh_from_db()
    if transfer.state not in (State.NEEDS_REVIEW, State.UNKNOWN):
        raise PortalError("Only an unresolved transfer can be resolved.", code="transfer_state")
    now = now or timezone.now()
    attempt = transfer.attempt
    if outcome == "recheck":
        if not transition(
            transfer,
            to=State.UNKNOWN,
            from_states=[transfer.state],
            attempt=attempt,
            now=now,
            fields={"empty_lookups": 0, "next_attempt_at": now, "first_unknown_at": now},
            audit=Audit(
                action="billing.transfer.recheck",
                actor=actor,
                request=request,
                data={"transfer": str(transfer.uuid), "note": note},
            ),
            publish=lambda: dispatch_reconcile(transfer.pk),
        ):
            raise Conflict("The transfer changed meanwhile; reload the page.", code="transfer_changed")
        transfer.refresh_from_db()
        return transfer
    if outcome not in ("succeeded", "failed"):
        raise PortalError("Choose recheck, succeeded or failed.", field="outcome")
    try:
        found = _lookup(transfer, now)
    except ProviderError as exc:
        raise PortalError(
            "The provider could not be asked; try again.", code="provider_unavailable", status=503
        ) from exc
    if outcome == "failed":
        if found:
            raise PortalError(
                "The provider shows this transfer; it cannot be marked failed.",
                field="outcome",
                code="provider_applied",
            )
        evidence = failed_evidence(transfer, now)
        if not evidence.complete:
            raise PortalError(
                "Not enough evidence that no money moved: " + "; ".join(evidence.missing) + ".",
                field="outcome",
                code="evidence_missing",
            )
        ok = finish_failure(
            transfer,
            attempt,
            from_states=[transfer.state],
            error=f"resolved by staff: {note}",
            actor=actor,
            action="billing.transfer.resolved_failed",
            request=request,
            now=now,
        )
    else:
        if not found:
            raise PortalError(
                "The provider does not show this transfer; it cannot be marked succeeded.",
                field="outcome",
                code="provider_absent",
            )
        ok = finish_success(
            transfer,
            attempt,
            from_states=[transfer.state],
            now=now,
            balance_after=None,
            provider_txn_id=found[0].transaction_id,
            actor=actor,
            action="billing.transfer.resolved_succeeded",
            note=note,
            request=request,
            evidence=_evidence(found),
        )
    if not ok:
        raise Conflict("The transfer changed meanwhile; reload the page.", code="transfer_changed")
    transfer.refresh_from_db()
    return transfer
