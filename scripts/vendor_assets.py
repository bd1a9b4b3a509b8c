#!/usr/bin/env python3
"""Refresh the vendored browser assets (htmx, uPlot) from the npm registry, by pinned version.

    python scripts/vendor_assets.py            # download, check the integrity, unpack
    python scripts/vendor_assets.py --check    # exit 1 if a vendored file differs from its tarball

The files are committed under dashboard/static/dashboard/vendor/<name>/ with the package's
LICENSE and a VERSION file, so neither `make run` nor CI has a Node build step or fetches
anything. To move to a new version, change the pin below (version and the registry's
`npm view <pkg>@<version> dist.integrity`) and run this script.

Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "dashboard" / "static" / "dashboard" / "vendor"
REGISTRY = "https://registry.npmjs.org"

# name -> (npm package, version, sha512 integrity, {file in the tarball: vendored name})
PINS: dict[str, tuple[str, str, str, dict[str, str]]] = {
    "htmx": (
        "htmx.org",
        "2.0.11",
        "sha512-Thx/WtpeOQqSrqBCw/A1cwGJGg4UrVa3+sW0GmrM3p4gJgO89ecH4qtbnyzDDWFvBTqjnIMCgELTNt636dtamA==",
        {"package/dist/htmx.min.js": "htmx.min.js", "package/LICENSE": "LICENSE"},
    ),
    "uplot": (
        "uplot",
        "1.6.32",
        "sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==",
        {
            "package/dist/uPlot.iife.min.js": "uPlot.iife.min.js",
            "package/dist/uPlot.min.css": "uPlot.min.css",
            "package/LICENSE": "LICENSE",
        },
    ),
}


def fetch(package: str, version: str, integrity: str) -> bytes:
    """The package tarball, refused unless its sha512 matches the pinned integrity."""
    tail = package.rsplit("/", 1)[-1]
    url = f"{REGISTRY}/{package}/-/{tail}-{version}.tgz"
    with urllib.request.urlopen(url, timeout=60) as resp:
        data = resp.read()
    algo, _, expected = integrity.partition("-")
    got = base64.b64encode(hashlib.new(algo, data).digest()).decode()
    if got != expected:
        raise SystemExit(f"{package}@{version}: integrity mismatch (got {algo}-{got})")
    return data


def files_of(name: str) -> dict[str, bytes]:
    package, version, integrity, wanted = PINS[name]
    out: dict[str, bytes] = {"VERSION": f"{package}@{version}\n".encode()}
    with tarfile.open(fileobj=io.BytesIO(fetch(package, version, integrity)), mode="r:gz") as tar:
        for member, target in wanted.items():
            extracted = tar.extractfile(member)
            if extracted is None:
                raise SystemExit(f"{package}@{version}: {member} missing from the tarball")
            out[target] = extracted.read()
    return out


def main(argv: list[str]) -> int:
    check = "--check" in argv
    differ = 0
    for name in PINS:
        for target, data in files_of(name).items():
            path = VENDOR / name / target
            if check:
                if not path.exists() or path.read_bytes() != data:
                    print(f"differs: {path.relative_to(ROOT)}")
                    differ += 1
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            print(f"wrote {path.relative_to(ROOT)} ({len(data)} bytes)")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
