"""What the console home shows. Apps contribute through CONSOLE_SUMMARY_HOOKS."""

from __future__ import annotations

import importlib
from typing import Any

# Dotted paths of functions returning dicts merged into the console home context.
CONSOLE_SUMMARY_HOOKS: list[str] = []


def console_summary() -> dict[str, Any]:
    context: dict[str, Any] = {}
    for path in CONSOLE_SUMMARY_HOOKS:
        module_name, _, func_name = path.rpartition(".")
        context.update(getattr(importlib.import_module(module_name), func_name)())
    return context
