"""The dependency audit (scripts/check_deps.py) fails on a known-vulnerable pin, passes the
project's own pins, follows -r includes, and never reports a pin it could not audit as safe.

The runs here use --offline: the advisory database installed from requirements-dev.txt, so
they need no network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_deps.py"
CANNOT_AUDIT = 77
VULNERABLE = "Django==3.2.0"  # advisories fixed in 3.2.1..3.2.5, all inside the offline snapshot


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )


def load_script():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import check_deps
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return check_deps


def test_the_self_check_fails_the_known_vulnerable_pin() -> None:
    done = run("--self-check", "--offline")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Self-check passed" in done.stdout and VULNERABLE in done.stdout
    assert "fails it" in done.stdout


def test_a_vulnerable_pin_fails_with_its_advisory_and_the_database_date(tmp_path: Path) -> None:
    pinned = tmp_path / "requirements.txt"
    pinned.write_text(f"# a comment\n{VULNERABLE}  # inline\nhttpx==0.28.1\n")
    done = run("--offline", pinned)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Source: offline" in done.stdout and "dated 2021-07-01" in done.stdout
    assert "only advisories published up to 2021-07-01" in done.stdout
    flagged = [line for line in done.stdout.splitlines() if line.strip().startswith("django==3.2.0")]
    assert flagged and all("pyup.io-" in line for line in flagged), done.stdout
    assert not any("httpx" in line for line in flagged)


def test_the_projects_own_pins_pass(tmp_path: Path) -> None:
    done = run("--offline")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pinned packages audited: no advisory up to 2021-07-01" in done.stdout
    safe = tmp_path / "safe.txt"
    safe.write_text("Django==5.2.19\nPyYAML==6.0.3\n")
    assert run("--offline", safe).returncode == 0


def test_an_included_file_is_audited_too(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text(VULNERABLE + "\n")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "more.txt").write_text("-r ../base.txt\n")
    top = tmp_path / "top.txt"
    top.write_text("--requirement nested/more.txt\nhttpx==0.28.1\n")
    done = run("--offline", top)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "django==3.2.0 [base.txt:1]" in done.stdout


def test_an_unpinned_or_missing_requirement_is_never_a_pass(tmp_path: Path) -> None:
    loose = tmp_path / "loose.txt"
    loose.write_text("Django>=3.2\n")
    done = run("--offline", loose)
    assert done.returncode == CANNOT_AUDIT and "not pinned" in done.stdout, done.stdout
    missing = tmp_path / "top.txt"
    missing.write_text("-r absent.txt\n")
    done = run("--offline", missing)
    assert done.returncode == CANNOT_AUDIT and "no such requirements file" in done.stdout, done.stdout


def test_the_offline_matching_reads_every_alternative_range() -> None:
    check_deps = load_script()
    advisory = {"id": "pyup.io-1", "specs": ["<1.0", ">=2.0,<2.2.24"], "v": "<1.0,>=2.0,<2.2.24"}
    assert check_deps.affects(advisory, "2.2.0") is True
    assert check_deps.affects(advisory, "0.9") is True
    assert check_deps.affects(advisory, "1.5") is False
    assert check_deps.affects(advisory, "2.2.24") is False
    assert check_deps.affects({"id": "x", "specs": ["<r5238"]}, "1.0") is None


def test_a_pin_the_registry_cannot_vouch_for_is_never_a_pass() -> None:
    """pip-audit's own JSON report for a pin it could not look up: the verdict is "could not
    audit" (77) with the pin named, never 0; a vulnerable pin is 1 even beside skipped ones."""
    check_deps = load_script()
    skipped = {"name": "django", "skip_reason": "Dependency not found on PyPI and could not be audited: django (4.2.0)"}
    verdict, lines = check_deps.summarise(0, {"dependencies": [skipped], "fixes": []}, "")
    assert verdict == CANNOT_AUDIT and "INCOMPLETE" in lines[0] and "django (4.2.0)" in lines[1]
    vulnerable = {"name": "django", "version": "4.2.0", "vulns": [{"id": "PYSEC-2023-1", "fix_versions": ["4.2.1"]}]}
    verdict, lines = check_deps.summarise(1, {"dependencies": [vulnerable, skipped]}, "")
    assert verdict == 1 and any("PYSEC-2023-1" in line and "4.2.1" in line for line in lines)
    assert check_deps.summarise(0, {"dependencies": [{"name": "x", "version": "1", "vulns": []}]}, "")[0] == 0
    assert check_deps.summarise(2, None, "network down")[0] == CANNOT_AUDIT


def test_the_accepted_reportlab_advisory_stays_true_no_code_parses_reportlab_markup() -> None:
    """The audit accepts CVE-2020-28463 (image tags in Paragraph markup) because the portal only
    draws plain strings on a canvas; a module that imported platypus would make that untrue."""
    root = Path(__file__).resolve().parents[2]
    offenders = [
        str(path.relative_to(root))
        for folder in ("api", "billing", "console", "customers", "portal", "providers", "reselling", "tenants")
        for path in (root / folder).rglob("*.py")
        if "reportlab.platypus" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []
