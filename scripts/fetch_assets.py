#!/usr/bin/env python3
"""Puts the pinned front-end packages of ``assets.lock`` under ``static/vendor/`` (git-ignored).

Standard library only, so it runs on a fresh machine before anything is installed (``make install``,
the Dockerfile). For each package: when every listed file is already there with its pinned
sha256, nothing happens (no network). Otherwise the tarball is downloaded from the npm registry,
checked against the registry's pinned ``integrity`` (sha512), and only the listed files are
extracted, each checked against its sha256, then written in place atomically.

Exit code 0 when every file is in place, 1 otherwise (with the reason on stderr).
Usage: python scripts/fetch_assets.py [--lock assets.lock] [--dest static/vendor] [--registry URL]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = os.environ.get("NPM_REGISTRY", "https://registry.npmjs.org")
MAX_TARBALL_BYTES = 20 * 1024 * 1024


class AssetError(Exception):
    pass


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tarball_url(registry: str, name: str, version: str) -> str:
    # Scoped names (@scope/pkg) keep the scope in the path but not in the file name.
    short = name.rsplit("/", 1)[-1]
    return f"{registry.rstrip('/')}/{name}/-/{short}-{version}.tgz"


def check_integrity(data: bytes, integrity: str) -> None:
    """``sha512-<base64>`` (Subresource Integrity form, as the registry publishes it)."""
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512" or not expected:
        raise AssetError(f"unsupported integrity {integrity!r} (sha512 expected)")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if actual != expected:
        raise AssetError(f"integrity mismatch: expected {integrity}, got sha512-{actual}")


def in_place(package: dict, dest: Path) -> bool:
    for spec in package["files"].values():
        target = dest / spec["to"]
        if not target.is_file() or _sha256(target.read_bytes()) != spec["sha256"]:
            return False
    return True


def download(url: str) -> bytes:
    if not url.startswith(("https://", "http://")):
        raise AssetError(f"{url}: only an http(s) registry is fetched from")
    request = urllib.request.Request(url, headers={"User-Agent": "portal-fetch-assets"})  # noqa: S310 (scheme checked)
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 (scheme checked)
        data = response.read(MAX_TARBALL_BYTES + 1)
    if len(data) > MAX_TARBALL_BYTES:
        raise AssetError(f"{url}: larger than {MAX_TARBALL_BYTES} bytes")
    return data


def extract(package: dict, data: bytes, dest: Path) -> None:
    """Only the listed members, by exact name: nothing else of the tarball touches the disk."""
    contents: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            if member.name in package["files"] and member.isfile():
                handle = archive.extractfile(member)
                if handle is not None:
                    contents[member.name] = handle.read()
    for member, spec in package["files"].items():
        if member not in contents:
            raise AssetError(f"{package['name']}@{package['version']}: {member} is not in the tarball")
        if _sha256(contents[member]) != spec["sha256"]:
            raise AssetError(f"{package['name']}@{package['version']}: {member} does not match its sha256")
    for member, spec in package["files"].items():
        target = dest / spec["to"]
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
            tmp.write(contents[member])
        os.chmod(tmp.name, 0o644)
        os.replace(tmp.name, target)


def fetch(lock: Path, dest: Path, registry: str = REGISTRY) -> list[str]:
    """The packages it had to download (empty when everything was in place)."""
    fetched = []
    for package in json.loads(lock.read_text())["packages"]:
        if in_place(package, dest):
            continue
        url = tarball_url(registry, package["name"], package["version"])
        try:
            data = download(url)
        except OSError as exc:
            raise AssetError(f"{url}: {exc}") from exc
        check_integrity(data, package["integrity"])
        extract(package, data, dest)
        fetched.append(f"{package['name']}@{package['version']}")
    return fetched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=ROOT / "assets.lock")
    parser.add_argument("--dest", type=Path, default=ROOT / "static" / "vendor")
    parser.add_argument("--registry", default=REGISTRY)
    args = parser.parse_args(argv)
    try:
        fetched = fetch(args.lock, args.dest, args.registry)
    except AssetError as exc:
        print(f"fetch_assets: {exc}", file=sys.stderr)
        return 1
    if fetched:
        print(f"fetch_assets: {', '.join(fetched)} -> {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
