"""Compile every locale/<language>/LC_MESSAGES/django.po into its django.mo, in pure Python.

`manage.py compilemessages` needs GNU gettext's msgfmt; this needs only polib (requirements-dev.txt),
so any machine with the venv can rebuild the catalogues. The .mo files are committed next to their
.po (the image and `make install` need no compiler); tests/portal/test_languages.py fails when a
committed .mo no longer matches its .po. Usage: `python scripts/compile_messages.py` (or `make messages`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import polib

LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"


def catalogues(locale_dir: Path = LOCALE_DIR) -> list[Path]:
    return sorted(locale_dir.glob("*/LC_MESSAGES/django.po"))


def compile_po(po_path: Path) -> polib.MOFile:
    """The catalogue a .mo holds: the translated, non-fuzzy entries (as msgfmt keeps them)."""
    po = polib.pofile(str(po_path))
    po.metadata_is_fuzzy = False
    mo = polib.MOFile()
    mo.metadata = dict(po.metadata)
    for entry in po.translated_entries():
        mo.append(
            polib.MOEntry(
                msgid=entry.msgid,
                msgid_plural=entry.msgid_plural,
                msgstr=entry.msgstr,
                msgstr_plural=dict(entry.msgstr_plural),
                msgctxt=entry.msgctxt,
            )
        )
    return mo


def main() -> int:
    found = catalogues()
    if not found:
        print(f"no catalogues under {LOCALE_DIR}", file=sys.stderr)
        return 1
    for po_path in found:
        mo_path = po_path.with_suffix(".mo")
        compile_po(po_path).save(str(mo_path))
        print(f"compiled {po_path.relative_to(LOCALE_DIR.parent)} -> {mo_path.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
