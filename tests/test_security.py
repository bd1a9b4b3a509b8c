"""Security: admin actions need their permissions (a view-only staff user gets 403); the
embedded ClickHouse server wants a password and reaches no file or URL outside its own
directories; /metrics answers loopback or a bearer token only."""

import http.client
import os
import shutil
import stat
import uuid
from pathlib import Path
from urllib.parse import urlparse

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from ingestion.models import ApiKey
from llmops.clickhouse import connection_params, new_client
from llmops.local_secrets import local_secret, with_local_password
from operations.models import BackupRun, DegradationState, TtlChange
from tests.ingest_helpers import new_org

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer(client):
    """Staff with every view permission and nothing else."""
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    client.force_login(user)
    return client


def test_a_view_only_staff_user_gets_403_from_every_admin_action(viewer):
    org, _ = new_org()
    key = org.api_keys.get()
    keys_before = ApiKey.objects.count()
    assert viewer.get(reverse("admin:ingestion_apikey_changelist")).status_code == 200

    issue = viewer.post(reverse("admin:ingestion_org_changelist"),
                        {"action": "issue_key", "_selected_action": [org.pk]})
    assert issue.status_code == 403
    assert ApiKey.objects.count() == keys_before

    revoke = viewer.post(reverse("admin:ingestion_apikey_changelist"),
                         {"action": "revoke", "_selected_action": [key.pk]})
    assert revoke.status_code == 403
    key.refresh_from_db()
    assert key.revoked_at is None

    backup = viewer.post(reverse("admin:operations_backuprun_changelist"),
                         {"action": "back_up_now", "_selected_action": []})
    assert backup.status_code == 403
    assert not BackupRun.objects.exists()

    add_key = viewer.post(reverse("admin:ingestion_apikey_add"), {"org": org.pk, "name": "x"})
    assert add_key.status_code == 403

    state = DegradationState.load()
    level = viewer.post(reverse("admin:operations_degradationstate_change", args=[state.pk]),
                        {"manual_level": "4", "reason": "not mine to set"})
    assert level.status_code == 403
    assert DegradationState.load().effective_level == 0

    ttl = viewer.post(reverse("admin:operations_ttlchange_add"), {"days": 1, "reason": "x"})
    assert ttl.status_code == 403
    assert not TtlChange.objects.exists()


def test_issuing_a_key_takes_the_change_permission_on_keys(client):
    org, _ = new_org()
    user = User.objects.create_user("keys", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(
        codename__in=["view_org", "view_apikey", "change_apikey"]))
    client.force_login(user)
    response = client.post(reverse("admin:ingestion_org_changelist"),
                           {"action": "issue_key", "_selected_action": [org.pk]})
    assert response.status_code == 302
    assert org.api_keys.count() == 2


# --- the embedded ClickHouse server -------------------------------------------------------

def _raw(query: str, headers: dict | None = None) -> tuple[int, str, str | None]:
    params = connection_params()
    conn = http.client.HTTPConnection(params["host"], params["port"], timeout=30)
    try:
        conn.request("POST", "/", body=query.encode(), headers=headers or {})
        response = conn.getresponse()
        return (response.status, response.read().decode(),
                response.headers.get("X-ClickHouse-Exception-Code"))
    finally:
        conn.close()


def test_clickhouse_wants_the_generated_password():
    credentials = settings.CLICKHOUSE_CREDENTIALS_FILE
    assert stat.S_IMODE(os.stat(credentials).st_mode) == 0o600
    password = credentials.read_text().strip()
    assert len(password) >= 32
    # The settings filled it into the URL the environment gave without one.
    assert connection_params()["password"] == password

    status, body, code = _raw("SELECT 1")
    assert (status, code) == (401, "516") and "AUTHENTICATION_FAILED" in body
    status, _, code = _raw("SELECT 1", {"X-ClickHouse-User": "default",
                                         "X-ClickHouse-Key": "wrong"})
    assert (status, code) == (401, "516")
    status, body, _ = _raw("SELECT 1", {"X-ClickHouse-User": "default",
                                         "X-ClickHouse-Key": password})
    assert (status, body) == (200, "1\n")
    status, _, _ = _raw("SELECT 1", {"X-ClickHouse-User": "admin",
                                      "X-ClickHouse-Key": password})
    assert status == 401

    params = connection_params()
    with pytest.raises(DatabaseError, match="516.*Authentication failed"):
        clickhouse_connect.get_client(host=params["host"], port=params["port"],
                                      password="wrong")
    with pytest.raises(DatabaseError, match="516.*Authentication failed"):
        new_client(password="")


def test_a_local_url_without_a_password_gets_the_generated_one(tmp_path):
    credentials = tmp_path / "credentials"
    url = "http://default:@127.0.0.1:8123/llmops"
    assert with_local_password(url, credentials) == url  # no file: as given
    secret = local_secret(credentials)
    assert stat.S_IMODE(os.stat(credentials).st_mode) == 0o600
    assert local_secret(credentials) == secret  # generated once
    assert urlparse(with_local_password(url, credentials)).password == secret
    for untouched in ("http://default:given@127.0.0.1:8123/llmops",
                      "http://reader:@127.0.0.1:8123/llmops",
                      "http://default:@clickhouse.internal:8123/llmops"):
        assert with_local_password(untouched, credentials) == untouched


@pytest.mark.parametrize("query", [
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM `file`('/etc/passwd', 'LineAsString')",
    "SELECT file('/etc/hostname')",
    "SELECT * FROM url('http://127.0.0.1:{port}/ping', 'LineAsString')",
    "INSERT INTO FUNCTION file('/tmp/llmops-security-{uid}', 'TSV', 'a UInt8') VALUES (1)",
    "SELECT 1 INTO OUTFILE '/tmp/llmops-security-{uid}'",
    "SELECT * FROM s3('http://127.0.0.1:{port}/bucket/x', 'TSV', 'a UInt8')",
    "SELECT * FROM remote('127.0.0.1:{port}', system.one)",
    "SELECT * FROM executable('cat', 'TSV', 'a String')",
    "CREATE TABLE llmops_sec_{uid} (a String) ENGINE = File(LineAsString, '/etc/passwd')",
    "CREATE TABLE llmops_sec_{uid} (a String) ENGINE = URL('http://127.0.0.1:{port}/', TSV)",
])
def test_clickhouse_reaches_no_file_or_url_outside_its_directories(query):
    uid = uuid.uuid4().hex[:8]
    text = query.format(port=connection_params()["port"], uid=uid)
    with pytest.raises(DatabaseError, match="497.*ACCESS_DENIED"):
        new_client().command(text)
    assert not Path(f"/tmp/llmops-security-{uid}").exists()


def test_clickhouse_still_backs_up_and_restores_to_its_backup_dir():
    client = new_client()
    table, location = f"sec_{uuid.uuid4().hex[:8]}", Path(settings.BACKUP_DIR) / "security"
    shutil.rmtree(location, ignore_errors=True)
    client.command(f"CREATE TABLE {table} (n UInt32) ENGINE = MergeTree ORDER BY n")
    client.command(f"INSERT INTO {table} SELECT number FROM numbers(100)")
    db = connection_params()["database"]
    try:
        client.command(f"BACKUP TABLE `{db}`.`{table}` TO File('{location}')")
        client.command(f"DROP TABLE {table} SYNC")
        client.command(f"RESTORE TABLE `{db}`.`{table}` FROM File('{location}')")
        assert client.command(f"SELECT sum(n) FROM {table}") == 4950
        with pytest.raises(DatabaseError, match="not allowed for backups"):
            client.command(f"BACKUP TABLE `{db}`.`{table}` TO File('/tmp/llmops-sec')")
    finally:
        client.command(f"DROP TABLE IF EXISTS {table}")
        shutil.rmtree(location, ignore_errors=True)


# --- /metrics -------------------------------------------------------------------------------

def test_metrics_answer_loopback_or_a_bearer_token(client, settings):
    settings.METRICS_TOKEN = "s3cret-token"
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    remote = client.get("/metrics", REMOTE_ADDR="203.0.113.7")
    assert remote.status_code == 403 and "detail" in remote.json()
    proxied = client.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert proxied.status_code == 403
    wrong = client.get("/metrics", REMOTE_ADDR="203.0.113.7",
                       HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 403
    right = client.get("/metrics", REMOTE_ADDR="203.0.113.7",
                       HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert right.status_code == 200 and b"# TYPE" in right.content


def test_metrics_without_a_token_setting_refuse_every_remote_caller(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.5",
                      HTTP_AUTHORIZATION="Bearer ").status_code == 403


# --- flower ---------------------------------------------------------------------------------

def _processes_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "processes_script", Path(settings.BASE_DIR) / "scripts" / "processes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flower_listens_on_loopback_and_elsewhere_only_with_basic_auth():
    processes = _processes_script()
    assert "--address=127.0.0.1" in processes.flower_command({})
    with pytest.raises(SystemExit, match="needs FLOWER_BASIC_AUTH"):
        processes.flower_command({"FLOWER_ADDRESS": "0.0.0.0"})
    command = processes.flower_command({"FLOWER_ADDRESS": "0.0.0.0",
                                        "FLOWER_BASIC_AUTH": "ops:pw"})
    assert "--address=0.0.0.0" in command
    assert not any("ops:pw" in part for part in command)  # not in argv, not in `ps`


def test_flower_with_basic_auth_refuses_a_caller_without_it(tmp_path):
    import base64
    import socket
    import subprocess
    import time

    processes = _processes_script()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [part if not part.startswith("--port=") else f"--port={port}"
               for part in processes.flower_command({})]
    env = {**os.environ, "FLOWER_BASIC_AUTH": "ops:pw", "DJANGO_SETTINGS_MODULE":
           "llmops.settings.test"}
    env.pop("FLOWER_PORT", None)
    with open(tmp_path / "flower.log", "wb") as log:
        proc = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        deadline, status = time.monotonic() + 60, None
        while time.monotonic() < deadline and status is None:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/")
                status = conn.getresponse().status
            except OSError:
                time.sleep(0.3)
        assert status == 401, (tmp_path / "flower.log").read_text()
        token = base64.b64encode(b"ops:pw").decode()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/", headers={"Authorization": f"Basic {token}"})
        assert conn.getresponse().status == 200
    finally:
        proc.terminate()
        proc.wait(30)


# --- secrets in deploy files and settings ----------------------------------------------------

def test_the_compose_file_has_no_default_secret():
    import yaml

    compose = yaml.safe_load((Path(settings.BASE_DIR) / "docker" / "docker-compose.yml")
                             .read_text())
    app = compose["x-app"]["environment"]
    assert app["DJANGO_SECRET_KEY"] == "${DJANGO_SECRET_KEY:?set DJANGO_SECRET_KEY}"
    assert "${CLICKHOUSE_PASSWORD:?" in app["CLICKHOUSE_URL"]
    flower = compose["services"]["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert flower["ports"] == ["127.0.0.1:5555:5555"]
    assert "SECRET_KEY=" not in (Path(settings.BASE_DIR) / "docker" / "Dockerfile").read_text()\
        .replace("DJANGO_SECRET_KEY=collectstatic-only", "")


def test_settings_refuse_the_published_key_with_debug_off(tmp_path):
    import subprocess
    import sys

    def check(**extra) -> subprocess.CompletedProcess:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "llmops.settings",
               "LLMOPS_VAR_DIR": str(tmp_path), **extra}
        return subprocess.run([sys.executable, "manage.py", "check"], cwd=settings.BASE_DIR,
                              env=env, capture_output=True, text=True, timeout=120)

    published = "dev-only-insecure-key-change-me-in-production"
    refused = check(DJANGO_SECRET_KEY=published, DJANGO_DEBUG="0")
    assert refused.returncode != 0 and "published development key" in refused.stderr
    assert check(DJANGO_SECRET_KEY=published, DJANGO_DEBUG="1").returncode == 0
    # No key configured (make run): one is generated once under var/, mode 0600.
    generated = check(DJANGO_SECRET_KEY="", DJANGO_DEBUG="0")
    assert generated.returncode == 0, generated.stderr
    key_file = tmp_path / "secret_key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert len(key_file.read_text().strip()) >= 50
