"""Dependency audit: the pinned requirements against the known vulnerabilities PyPI publishes.

    python scripts/check_deps.py               audit requirements.txt and requirements-dev.txt
    python scripts/check_deps.py --self-check  prove the audit fails on a known-vulnerable pin

Runs pip-audit on the pins only (no resolution, no installation: --disable-pip --no-deps), with
PyPI's own vulnerability data (-s pypi), so it needs nothing but the package registry.

Exit status: 0 every pin audited and none vulnerable; 1 a pin has a known vulnerability (each
is listed with the versions that fix it); 77 the audit could not be done (pip-audit missing,
or the registry did not answer for a pin) - this says why and is never reported as a pass.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = (ROOT / "requirements.txt", ROOT / "requirements-dev.txt")
CANNOT_AUDIT = 77
# A pin with published vulnerabilities (several Django security releases followed 4.2.0).
KNOWN_VULNERABLE = "Django==4.2.0"
TIMEOUT_SECONDS = 600


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


def run_audit(files: list[Path]) -> int:
    verdict, lines = summarise(*audit(files))
    print("\n".join(lines))
    return verdict


def self_check() -> int:
    """The audit must fail on a known-vulnerable pin; if the registry cannot tell, say so."""
    with tempfile.TemporaryDirectory() as folder:
        pinned = Path(folder) / "requirements.txt"
        pinned.write_text(KNOWN_VULNERABLE + "\n")
        verdict, lines = summarise(*audit([pinned]))
    if verdict == 1:
        print(f"Self-check passed: the audit fails on {KNOWN_VULNERABLE}.")
        return 0
    if verdict == CANNOT_AUDIT:
        print(f"Self-check SKIPPED: {KNOWN_VULNERABLE} could not be audited here, so this machine cannot tell a")
        print("vulnerable pin from a safe one.")
        print("\n".join(lines))
        return CANNOT_AUDIT
    print(f"Self-check FAILED: the audit passed {KNOWN_VULNERABLE}, which has published vulnerabilities.")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--self-check", action="store_true", help="audit a known-vulnerable pin and expect failure")
    parser.add_argument("requirements", nargs="*", type=Path, help="requirement files (default: the project's two)")
    args = parser.parse_args(argv)
    if args.self_check:
        return self_check()
    return run_audit(args.requirements or list(REQUIREMENTS))


if __name__ == "__main__":
    sys.exit(main())
