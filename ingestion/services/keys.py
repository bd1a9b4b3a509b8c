"""API keys kept by the platform's own scripts: one demo key reused across `make run`s."""

import os
from pathlib import Path

from ingestion.models import ApiKey, Org, hash_key


def reusable_key(*, path: Path, org_slug: str, name: str = "") -> tuple[str, bool]:
    """(the secret, whether it was issued now): the key stored at `path` while it is still an
    active key of the org, else a new key for the org (created if needed), stored there (mode
    0600) for next time. The file holds a secret: it lives under var/, never committed."""
    org, _ = Org.objects.get_or_create(slug=org_slug, defaults={"name": org_slug})
    try:
        raw = path.read_text().strip()
    except OSError:
        raw = ""
    if raw and ApiKey.objects.active().filter(org=org, key_hash=hash_key(raw)).exists():
        return raw, False
    _, raw = ApiKey.issue(org, name=name)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(raw + "\n")
    return raw, True
