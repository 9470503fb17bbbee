"""Dependency audit: the pinned requirements against known vulnerabilities.

    python scripts/check_deps.py               audit requirements.txt and requirements-dev.txt
    python scripts/check_deps.py FILE...       audit these requirement files (their -r includes too)
    python scripts/check_deps.py --self-check  prove the audit fails on a known-vulnerable pin
    --offline                                  skip the online service, use only the offline database

Two sources, tried in this order:

1. online: pip-audit on the pins only (no resolution, no installation: --disable-pip --no-deps),
   with PyPI's own vulnerability data (-s pypi);
2. offline, when the online audit cannot be done (pip-audit missing, or the registry gave no
   vulnerability data for a pin, as on a registry mirror): PyUp's advisory database shipped by
   the safety-db package (pinned in requirements-dev.txt). Every name==version pin of the files
   and of the files they include with -r is matched against its version specifiers. That
   database is a snapshot: it knows only the advisories published up to its date, which is
   printed on every run, so a pass from it says nothing about anything published later.

Exit status: 0 every pin audited and none vulnerable; 1 a pin has a known vulnerability (each
is listed with its advisory); 77 the audit could not be done by either source - this says why
and is never reported as a pass.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = (ROOT / "requirements.txt", ROOT / "requirements-dev.txt")
CANNOT_AUDIT = 77
# A pin with published vulnerabilities that both sources know of: the online service, and the
# offline database (advisories for 3.2.0 fixed in 3.2.1 to 3.2.5, all before its snapshot date).
KNOWN_VULNERABLE = "Django==3.2.0"
# Advisories read and found not to apply, each with why; they are printed on every run and do
# not fail it. Keep this short: an entry is a decision someone must be able to check.
ACCEPTED = {
    "pyup.io-39642": (
        "reportlab: server-side request forgery through <img> tags in Paragraph markup "
        "(CVE-2020-28463). Upstream added trustedHosts in 3.5.55, yet the database still lists every "
        "version. The portal writes invoice text with canvas.drawString, which parses no markup."
    ),
}
TIMEOUT_SECONDS = 600
ADVISORY_CHARS = 200
ONLINE = "online: PyPI's vulnerability service, through pip-audit"


# --- online: pip-audit -------------------------------------------------------------------------


def pip_audit() -> str | None:
    here = Path(sys.executable).with_name("pip-audit")
    return str(here) if here.exists() else shutil.which("pip-audit")


def audit(files: list[Path]) -> tuple[int, dict[str, Any] | None, str]:
    """(pip-audit's exit status, its JSON report or None, its error output)."""
    command = pip_audit()
    if command is None:
        return CANNOT_AUDIT, None, "pip-audit is not installed (it is pinned in requirements-dev.txt)"
    args = [command, "--disable-pip", "--no-deps", "-s", "pypi", "-f", "json", "--progress-spinner", "off"]
    for path in files:
        args += ["-r", str(path)]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        return CANNOT_AUDIT, None, f"pip-audit did not finish within {TIMEOUT_SECONDS} s"
    try:
        report = json.loads(done.stdout) if done.stdout.strip() else None
    except json.JSONDecodeError:
        report = None
    return done.returncode, report, done.stderr.strip()


def summarise(status: int, report: dict[str, Any] | None, errors: str) -> tuple[int, list[str]]:
    """The verdict (0, 1 or 77) and the lines that explain it."""
    if report is None:
        return CANNOT_AUDIT, [f"The audit could not run: {errors[-800:] or f'pip-audit exited with {status}'}"]
    vulnerable, skipped = [], []
    for dependency in report.get("dependencies", []):
        name, version = dependency.get("name", "?"), dependency.get("version", "?")
        if dependency.get("skip_reason"):
            skipped.append(f"  {name}: {dependency['skip_reason']}")
        for vuln in dependency.get("vulns", []):
            fixed = ", ".join(vuln.get("fix_versions", [])) or "no fixed version yet"
            vulnerable.append(f"  {name} {version}: {vuln.get('id', '?')} (fixed in {fixed})")
    if vulnerable:
        return 1, ["Pins with known vulnerabilities:", *vulnerable] + (
            ["Pins that could not be audited:", *skipped] if skipped else []
        )
    if skipped:
        return CANNOT_AUDIT, [
            "The audit is INCOMPLETE: the registry gave no vulnerability data for these pins, so they "
            "were not checked (is https://pypi.org/pypi/<name>/<version>/json reachable from here?):",
            *skipped,
        ]
    count = len(report.get("dependencies", []))
    return 0, [f"{count} pinned packages audited: no known vulnerabilities."]


# --- the pins of requirement files ---------------------------------------------------------------


@dataclass(frozen=True)
class Pin:
    name: str  # canonical (PEP 503) name
    version: str
    source: str  # "file:line", for the report


def logical_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) with comments dropped and backslash continuations joined."""
    joined: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not pending:
            start = number
        text = raw.split(" #", 1)[0] if not raw.lstrip().startswith("#") else ""
        if text.rstrip().endswith("\\"):
            pending += text.rstrip()[:-1] + " "
            continue
        line, pending = (pending + text).strip(), ""
        if line:
            joined.append((start, line))
    if pending.strip():
        joined.append((start, pending.strip()))
    return joined


def read_pins(files: list[Path]) -> tuple[list[Pin], list[str]]:
    """The name==version pins of the files and of every file they include with -r, and the
    lines that could not be audited (not a pin, or a file that does not exist)."""
    pins: list[Pin] = []
    problems: list[str] = []
    seen: set[Path] = set()
    queue = [path.resolve() for path in files]
    while queue:
        path = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        if not path.is_file():
            problems.append(f"  {path}: no such requirements file")
            continue
        for number, line in logical_lines(path):
            where = f"{path.name}:{number}"
            include = include_target(line)
            if include is not None:
                queue.append((path.parent / include).resolve())
            elif line.startswith("-"):
                continue  # an index, constraint or hash option: nothing to audit on its own
            else:
                pin, problem = parse_pin(line, where)
                if pin is not None:
                    pins.append(pin)
                else:
                    problems.append(f"  {where}: {problem}")
    return pins, problems


def include_target(line: str) -> str | None:
    for option in ("-r", "--requirement"):
        if line == option or not line.startswith(option):
            continue
        rest = line[len(option) :]
        if rest[:1] in (" ", "=", "\t"):
            return rest[1:].strip() or None
        if option == "-r" and rest:
            return rest.strip()
    return None


def parse_pin(line: str, where: str) -> tuple[Pin | None, str]:
    text = line.split(" --", 1)[0].strip()  # per-requirement options such as --hash
    try:
        requirement = Requirement(text)
    except InvalidRequirement as error:
        return None, f"not a requirement the audit understands ({error})"
    specifiers = list(requirement.specifier)
    exact = len(specifiers) == 1 and specifiers[0].operator in ("==", "===")
    if not exact or "*" in specifiers[0].version:
        return None, f"{text!r} is not pinned to one version (name==version), so it cannot be audited"
    return Pin(canonicalize_name(requirement.name), specifiers[0].version, where), ""


# --- offline: the advisory database --------------------------------------------------------------


@dataclass(frozen=True)
class OfflineDatabase:
    version: str
    date: str  # the snapshot's date: advisories published later are unknown to it
    advisories: dict[str, list[dict[str, Any]]]  # canonical name -> its advisories

    @property
    def label(self) -> str:
        return (
            f"offline: PyUp's advisory database (safety-db {self.version}), dated {self.date}; it knows only "
            f"advisories published up to {self.date}, nothing later"
        )


def load_offline_database() -> OfflineDatabase | str:
    """The database, or why it cannot be loaded. The package's own module opens its files by a
    path relative to the working directory, so its folder is found without importing it."""
    spec = importlib.util.find_spec("safety_db")
    if spec is None or not spec.submodule_search_locations:
        return "the offline database is not installed (safety-db is pinned in requirements-dev.txt)"
    folder = Path(next(iter(spec.submodule_search_locations)))
    try:
        full = json.loads((folder / "insecure_full.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return f"the offline database could not be read: {error}"
    meta = full.pop("$meta", {}) if isinstance(full, dict) else {}
    if not isinstance(full, dict) or not full or "timestamp" not in meta:
        return "the offline database has no advisories or no date, so it cannot vouch for anything"
    date = datetime.fromtimestamp(int(meta["timestamp"]), UTC).date().isoformat()
    advisories: dict[str, list[dict[str, Any]]] = {}
    for name, entries in full.items():
        advisories.setdefault(canonicalize_name(name), []).extend(entries)
    try:
        from importlib.metadata import version

        release = version("safety-db")
    except Exception:  # noqa: BLE001 - the version is only for the report
        release = "unknown version"
    return OfflineDatabase(release, date, advisories)


def affects(advisory: dict[str, Any], version: str) -> bool | None:
    """Whether the advisory covers the version (its specs are alternatives); None if none of
    its specifiers can be read."""
    specs = advisory.get("specs") or [advisory.get("v", "")]
    readable = False
    for spec in specs:
        try:
            specifier = SpecifierSet(spec)
        except InvalidSpecifier:
            continue
        readable = True
        if specifier.contains(version, prereleases=True):
            return True
    return False if readable else None


def offline_summarise(database: OfflineDatabase, pins: list[Pin], problems: list[str]) -> tuple[int, list[str]]:
    vulnerable, unreadable, accepted = [], [], []
    for pin in pins:
        for advisory in database.advisories.get(pin.name, []):
            hit = affects(advisory, pin.version)
            ident = advisory.get("id", "?") + (f" ({advisory['cve']})" if advisory.get("cve") else "")
            if hit and advisory.get("id") in ACCEPTED:
                accepted.append(f"  {pin.name}=={pin.version}: {ident} accepted: {ACCEPTED[advisory['id']]}")
            elif hit:
                text = " ".join(str(advisory.get("advisory", "")).split())[:ADVISORY_CHARS]
                vulnerable.append(f"  {pin.name}=={pin.version} [{pin.source}]: {ident}: {text}")
            elif hit is None:
                unreadable.append(f"  {pin.name}=={pin.version}: advisory {ident} has no readable version range")
    notes = ["Advisories that do not apply here:", *accepted] if accepted else []
    if vulnerable:
        return 1, ["Pins with known vulnerabilities:", *vulnerable] + (
            ["Not audited:", *problems, *unreadable] if problems or unreadable else []
        ) + notes
    if problems or unreadable:
        return CANNOT_AUDIT, ["The audit is INCOMPLETE: these were not checked:", *problems, *unreadable, *notes]
    if not pins:
        return CANNOT_AUDIT, ["No pinned requirement was found, so nothing was audited."]
    return 0, [
        f"{len(pins)} pinned packages audited: no advisory up to {database.date} covers them.",
        *notes,
    ]


# --- the audit ----------------------------------------------------------------------------------


def audit_with_fallback(files: list[Path], offline_only: bool = False) -> tuple[int, list[str]]:
    """The verdict and its report, from the online service or, when it cannot audit, offline."""
    database = load_offline_database()
    lines = [f"Offline database: {database.label}" if isinstance(database, OfflineDatabase) else database]
    if not offline_only:
        verdict, found = summarise(*audit(files))
        if verdict != CANNOT_AUDIT:
            return verdict, [*lines, f"Source: {ONLINE}", *found]
        lines += [
            f"The online audit could not be done ({ONLINE}):",
            *found[:12],
            "Falling back to the offline database.",
        ]
    if not isinstance(database, OfflineDatabase):
        return CANNOT_AUDIT, [*lines, "No source could audit the pins."]
    verdict, found = offline_summarise(database, *read_pins(files))
    return verdict, [*lines, f"Source: {database.label}", *found]


def run_audit(files: list[Path], offline_only: bool = False) -> int:
    verdict, lines = audit_with_fallback(files, offline_only)
    print("\n".join(lines))
    return verdict


def self_check(offline_only: bool = False) -> int:
    """The audit must fail on a known-vulnerable pin, through the online service where it can
    audit and through the offline database always; if neither can tell, say so (77)."""
    with tempfile.TemporaryDirectory() as folder:
        pinned = Path(folder) / "requirements.txt"
        pinned.write_text(KNOWN_VULNERABLE + "\n")
        verdicts: dict[str, int] = {}
        if not offline_only:
            verdicts[ONLINE], _ = summarise(*audit([pinned]))
        database = load_offline_database()
        if isinstance(database, OfflineDatabase):
            verdicts[database.label], _ = offline_summarise(database, *read_pins([pinned]))
        else:
            print(database)
    for source, verdict in verdicts.items():
        word = {0: "PASSED it (wrong)", 1: "fails it", CANNOT_AUDIT: "could not audit it"}.get(verdict, str(verdict))
        print(f"  {source}: {word}")
    if any(verdict == 0 for verdict in verdicts.values()):
        print(f"Self-check FAILED: the audit passed {KNOWN_VULNERABLE}, which has published vulnerabilities.")
        return 1
    if any(verdict == 1 for verdict in verdicts.values()):
        print(f"Self-check passed: the audit fails on {KNOWN_VULNERABLE}.")
        return 0
    print(f"Self-check SKIPPED: {KNOWN_VULNERABLE} could not be audited here, so this machine cannot tell a")
    print("vulnerable pin from a safe one.")
    return CANNOT_AUDIT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--self-check", action="store_true", help="audit a known-vulnerable pin and expect failure")
    parser.add_argument("--offline", action="store_true", help="skip the online service; use the offline database")
    parser.add_argument("requirements", nargs="*", type=Path, help="requirement files (default: the project's two)")
    args = parser.parse_args(argv)
    if args.self_check:
        return self_check(args.offline)
    return run_audit(args.requirements or list(REQUIREMENTS), args.offline)


if __name__ == "__main__":
    sys.exit(main())
