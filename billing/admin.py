"""Read-only admin views of billing data: money changes go through billing.services only."""

from typing import Any

from django.contrib import admin

from billing.models import DriftItem, JournalEntry, JournalLine, LowBalanceAlert, SyncRun, Transfer


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(Transfer)
class TransferAdmin(ReadOnly):
    list_display = ("payment_reference", "tenant", "direction", "amount", "currency", "state", "attempt", "created_at")
    list_filter = ("state", "direction", "origin")
    search_fields = ("payment_reference",)
    show_full_result_count = False
    list_select_related = ("tenant",)


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnly):
    list_display = ("started_at", "connection", "kind", "state", "pages", "seen", "changed", "new", "missing", "errors")
    list_filter = ("kind", "state")


@admin.register(DriftItem)
class DriftItemAdmin(ReadOnly):
    list_display = ("detected_at", "tenant", "kind", "portal_amount", "provider_amount", "resolved_at")
    list_filter = ("kind",)


class LineInline(admin.TabularInline):
    model = JournalLine
    extra = 0
    can_delete = False

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(JournalEntry)
class JournalEntryAdmin(ReadOnly):
    list_display = ("created_at", "kind", "currency", "memo")
    list_filter = ("kind",)
    inlines = [LineInline]


@admin.register(LowBalanceAlert)
class LowBalanceAlertAdmin(ReadOnly):
    list_display = ("created_at", "tenant", "balance", "threshold", "owners_sent_at", "staff_sent_at")
