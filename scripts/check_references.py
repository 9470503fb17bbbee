"""Fail when a file in the repository refers to a document that is not in the repository.

Run from the repository root (``make lint-docs`` and CI do):

    .venv/bin/python scripts/check_references.py

It reads every file git knows about (tracked, plus untracked files that are not ignored, so a
new file is checked before it is committed), skips binary files, and reports each line that

* names a Markdown document (a word ending in ``.md``) that is no file of the repository, or
  a relative path (``../name``) that climbs out of the repository, or the folders where the
  provider notes and the original provider pages are kept outside it;
* cites a numbered section of such a document (a section sign followed by a number, or an
  entry of its "Unknowns" list such as ``(Unknown 5)``), or one of its source tags (``[ERR]``,
  ``[NODE116]``);
* uses one of the codes those documents give their test cases and invariants: F1-F15, C1-C7,
  B1-B9, S1-S9, I1-I8, written as a word of its own (``(F14)``, ``I1-I5``) or as a part of a
  test's name (``test_f14_children_...``). Hex digits, CSS colours and escapes (``#B8C4D0``,
  ``0xC3``, ``\\xB8``, ``U+C1``, ``%C3``), hex dumps (``C3 A9``), Unicode's "C0/C1 controls"
  and Amazon S3 are not codes;
* links ``docs/<name>.md`` (optionally ``#anchor``), or a relative ``.md`` file from a Markdown
  link, that does not exist, or whose heading the anchor names does not exist.

Each hit is printed as ``path:line: text``; the last line is a JSON summary
``{"files": N, "hits": N}``. Exit status 1 when there is any hit. Standard library only.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path.cwd()
SELF = "scripts/check_references.py"

# The folders of provider notes and original provider pages kept beside the repository.
OUTSIDE_FOLDERS = re.compile(r"\bshared/(?:providers|seeds|hooks)\b|\bseeds/|\bseed (?:docs?|documents?|pages?)\b")
MARKDOWN_NAME = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w-]+\.md)\b")
CLIMBING_PATH = re.compile(r"(?<![\w.])((?:\.\./)+[\w.-]+)")

# A numbered section of a document ("§3", "§ 6.4"), an entry of a document's "Unknowns" list
# ("(Unknown 5)", "Unknowns 9:"), and the source tags the provider notes use.
SECTION = re.compile(
    r"§\s*\d"
    r"|\bUnknowns? (?:1[0-4]|[1-9])\b(?=[),.;:]|$)"
    r"|\[(?:NODE\d*|PY\d+|JAVA|PHP\d*|GO|NET|ERR|D-(?:acc|hist|users|struct)|S-seed\d)\]"
)

# The codes of the outside documents' test cases and invariants.
CODE = r"(?:F(?:1[0-5]|[1-9])|C[1-7]|B[1-9]|S[1-9]|I[1-8])"
CODE_WORD = re.compile(rf"(?<![\w#%+\\]){CODE}(?!\w)")
CODE_PART = re.compile(rf"^{CODE.lower()}$")
TEST_NAME = re.compile(r"\b(?:test|Test)_?\w+")
HEX_PAIR = re.compile(r"^[0-9A-Fa-f]{2}$")
# Ordinary names that look like codes: Unicode's C0 and C1 control characters, Amazon S3 and
# its buckets, the F1 score or key.
ORDINARY = re.compile(
    r"\bC0/C1\b|\bC[01] controls?\b|(?:Amazon|AWS) S3\b|\bS3[ -](?:bucket|storage|compatible|API)|\bF1[ -](?:score|key)",
    re.IGNORECASE,
)

DOCS_LINK = re.compile(r"(?<![\w/.-])docs/([\w.-]+\.md)(#[\w-]*)?")
MARKDOWN_LINK = re.compile(r"\]\(\s*<?([^)\s>#]+\.md)(#[^)\s>]*)?>?\s*\)")


def repository_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
        cwd=ROOT,
    ).stdout
    return sorted({name for name in out.decode("utf-8", "surrogateescape").split("\0") if name})


def read_text(path: Path) -> str | None:
    """The file's text, or None for a binary file (a NUL byte, or not UTF-8)."""
    try:
        data = path.read_bytes()
    except OSError:  # listed by git but gone from the working tree
        return None
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def is_hex_dump(line: str, start: int, end: int) -> bool:
    """``C3 A9``: the code sits between other two-digit hex tokens, so it is a byte, not a code."""
    before = line[:start].split()
    after = line[end:].split()
    neighbours = [before[-1] if before else "", after[0] if after else ""]
    return any(HEX_PAIR.match(n.strip(",;:()[]")) for n in neighbours)


def has_code(line: str) -> bool:
    line = ORDINARY.sub(" ", line)
    for match in CODE_WORD.finditer(line):
        if line[max(0, match.start() - 2) : match.start()].lower() == "0x":
            continue
        if is_hex_dump(line, match.start(), match.end()):
            continue
        return True
    for match in TEST_NAME.finditer(line):
        parts = match.group(0).lower().split("_")
        if any(CODE_PART.match(part) for part in parts[1:]):
            return True
    return False


_anchors: dict[Path, set[str]] = {}


def anchors_of(markdown: Path) -> set[str]:
    """The heading anchors of a Markdown file, spelled as GitHub makes them: lower case, only
    letters, digits, spaces, hyphens and underscores kept, spaces turned into hyphens, and
    ``-1``, ``-2``... after a repeated heading."""
    if markdown not in _anchors:
        seen: dict[str, int] = {}
        found: set[str] = set()
        in_code = False
        for line in (read_text(markdown) or "").splitlines():
            if line.lstrip().startswith("```"):
                in_code = not in_code
            heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
            if in_code or not heading:
                continue
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
        _anchors[markdown] = found
    return _anchors[markdown]


def missing_target(target: Path, anchor: str | None) -> bool:
    if not target.is_file():
        return True
    return bool(anchor) and target.suffix == ".md" and anchor.lstrip("#") not in anchors_of(target)


def broken_links(path: str, line: str) -> Iterator[str]:
    for match in DOCS_LINK.finditer(line):
        if missing_target(ROOT / "docs" / match.group(1), match.group(2)):
            yield f"docs/{match.group(1)}{match.group(2) or ''}"
    if path.endswith(".md"):
        base = (ROOT / path).parent
        for match in MARKDOWN_LINK.finditer(line):
            target = match.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("/"):
                continue  # a URL or an absolute path: not a file of this repository
            resolved = (base / target).resolve()
            inside = resolved == ROOT.resolve() or ROOT.resolve() in resolved.parents
            if not inside or missing_target(resolved, match.group(2)):
                yield target


_markdown_names: set[str] = set()


def markdown_names() -> set[str]:
    """The names of the repository's Markdown files (``architecture.md``)."""
    if not _markdown_names:
        for name in repository_files():
            if name.endswith(".md"):
                _markdown_names.add(name.rsplit("/", 1)[-1])
    return _markdown_names


def outside_documents(path: str, line: str) -> bool:
    """A document named that the repository does not hold, or a path that leaves it."""
    if OUTSIDE_FOLDERS.search(line):
        return True
    if any(match.group(1).rsplit("/", 1)[-1] not in markdown_names() for match in MARKDOWN_NAME.finditer(line)):
        return True
    base = (ROOT / path).parent
    root = ROOT.resolve()
    for match in CLIMBING_PATH.finditer(line):
        resolved = (base / match.group(1)).resolve()
        if resolved != root and root not in resolved.parents:
            return True
    return False


def check_line(path: str, line: str) -> bool:
    return bool(
        outside_documents(path, line) or SECTION.search(line) or has_code(line) or any(broken_links(path, line))
    )


def main() -> int:
    files = 0
    hits = 0
    for path in repository_files():
        if path == SELF:
            continue
        text = read_text(ROOT / path)
        if text is None:
            continue
        files += 1
        for number, line in enumerate(text.splitlines(), start=1):
            if check_line(path, line):
                hits += 1
                print(f"{path}:{number}: {line.strip()}")
    print(json.dumps({"files": files, "hits": hits}))
    return 1 if hits else 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
