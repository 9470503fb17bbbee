"""What the console home shows. Apps contribute through CONSOLE_SUMMARY_HOOKS."""

from __future__ import annotations

import importlib
from typing import Any

# Dotted paths of functions returning dicts merged into the console home context.
CONSOLE_SUMMARY_HOOKS: list[str] = [
    "portal.api.console_views.console_panel",
    "billing.console.summary",
    "tenants.selectors.console_summary",
]


def console_summary() -> dict[str, Any]:
    context: dict[str, Any] = {}
    for path in CONSOLE_SUMMARY_HOOKS:
        module_name, _, func_name = path.rpartition(".")
        contributed = dict(getattr(importlib.import_module(module_name), func_name)())
        # Panels from several apps add up instead of replacing each other.
        panels = [*context.get("console_panels", []), *contributed.pop("console_panels", [])]
        context.update(contributed)
        if panels:
            context["console_panels"] = panels
    return context
