"""Secrets a single machine generates once and keeps under var/ (mode 0600): the embedded
ClickHouse server's password, the Django secret key when none is configured.
Standard library only: the ClickHouse server uses it without Django."""

import os
import secrets
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit


def read_secret(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def local_secret(path: Path, nbytes: int = 32) -> str:
    """The secret in `path`, generated first if the file does not exist. Several processes
    may start at once: the file appears whole (written aside, then linked) and only once."""
    existing = read_secret(path)
    if existing:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_urlsafe(nbytes) + "\n")
    try:
        os.link(aside, path)
    except FileExistsError:
        pass  # another process was first: use its secret
    finally:
        aside.unlink()
    return read_secret(path) or ""


def with_local_password(url: str, credentials_file: Path) -> str:
    """`url` with the password of the embedded server filled in when the URL names the
    `default` user without a password, points at this machine, and the server has
    generated its credentials file; any other URL is returned unchanged."""
    parts = urlsplit(url)
    local = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if not local or parts.password or (parts.username or "default") != "default":
        return url
    password = read_secret(credentials_file)
    if not password:
        return url
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = f"default:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
