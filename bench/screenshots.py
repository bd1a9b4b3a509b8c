"""Screenshots of the dashboard for the README: `python -m bench screenshots` (`make
screenshots`) writes docs/screenshots/<page>.png, taken by headless Chromium (Debian's
chromium and chromium-driver, as the browser tests use) from a server in this process.

The data is the query benchmark's (1,000,000 spans over 30 days, loaded once by bench.query
in the benchmarks' own stores), plus a few hundred scores and two evaluator configs for the
Quality page, written once. Light colour scheme, 1280x860 pixels, reduced to a 256-colour
palette so the files stay small in the repository."""

import os
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.wsgi import get_wsgi_application

from bench.env import ROOT
from bench.query import bench_org, load
from dashboard.models import Membership
from evaluation.models import EvaluatorConfig
from evaluation.services import scores
from llmops.clickhouse import get_client

OUT = ROOT / "docs" / "screenshots"
USER, PASSWORD = "screenshots@example.com", "screenshots-demo-pw"
SIZE = (1280, 860)


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


class ThreadedServer(WSGIServer):
    daemon_threads = True

    def process_request(self, request, client_address):
        threading.Thread(target=self._serve, args=(request, client_address),
                         daemon=True).start()

    def _serve(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        finally:
            self.shutdown_request(request)


def demo_scores(org) -> None:
    """Scores of two evaluators over the last day, and their configs, unless already there."""
    for name, kind in (("helpfulness", "llm_judge"), ("valid-json", "json_valid")):
        EvaluatorConfig.objects.get_or_create(org=org, name=name,
                                              defaults={"evaluator_type": kind})
    held = get_client().command("SELECT count() FROM scores WHERE org_id = {org:UInt64} "
                                "AND timestamp > now() - INTERVAL 1 DAY",
                                parameters={"org": org.id})
    if held:
        return
    rng = random.Random(7)
    traces = [row[0] for row in get_client().query(
        "SELECT trace_id FROM trace_index WHERE org_id = {org:UInt64} LIMIT 400",
        parameters={"org": org.id}).result_rows]
    now = datetime.now(UTC)
    rows = []
    for trace in traces:
        at = now - timedelta(minutes=rng.uniform(0, 24 * 60))
        rows.append(scores.row(
            org_id=org.id, trace_id=trace, span_id="", evaluator="helpfulness",
            score_id=f"h-{trace}", status=rng.choices(["ok", "failed", "skipped"],
                                                      [0.9, 0.05, 0.05])[0],
            source="evaluator", span_time=at, timestamp=at, evaluator_type="llm_judge",
            data_type="numeric", value=round(min(1.0, max(0.0, rng.gauss(0.72, 0.15))), 2)))
        rows.append(scores.row(
            org_id=org.id, trace_id=trace, span_id="", evaluator="valid-json",
            score_id=f"j-{trace}", status="ok", source="evaluator", span_time=at,
            timestamp=at, evaluator_type="json_valid", data_type="boolean",
            value=float(rng.random() < 0.93)))
    scores.write(rows)


def staff_user(org):
    user, _ = get_user_model().objects.get_or_create(username=USER, defaults={"email": USER})
    user.set_password(PASSWORD)
    user.is_staff = True
    user.save()
    Membership.objects.get_or_create(user=user, org=org, defaults={"role": "admin"})
    return user


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", f"--window-size={SIZE[0]},{SIZE[1]}",
                     "--hide-scrollbars",
                     "--no-first-run", "--disable-background-networking"):
        options.add_argument(argument)
    service = Service(os.environ.get("CHROMEDRIVER_BINARY", "/usr/bin/chromedriver"), port=0)
    driver = webdriver.Chrome(options=options, service=service)
    # The pages follow the system's light or dark setting: these are taken in light.
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
        "features": [{"name": "prefers-color-scheme", "value": "light"}]})
    return driver


def shrink(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256)
    small.save(path, optimize=True)


def pages(org_id: int) -> list[tuple[str, str]]:
    trace = get_client().command(
        "SELECT trace_id FROM trace_index WHERE org_id = {org:UInt64} "
        "ORDER BY trace_start DESC LIMIT 1", parameters={"org": org_id})
    session = get_client().command(
        "SELECT session_id FROM spans WHERE org_id = {org:UInt64} "
        "ORDER BY start_time DESC LIMIT 1", parameters={"org": org_id})
    return [
        ("overview", "/overview/?window=7d"),
        ("traces", "/traces/"),
        ("trace", f"/traces/{trace}"),
        ("session", f"/session/?id={quote(session)}"),
        ("costs", "/costs/?window=7d&group_by=model"),
        ("quality", "/quality/?window=24h"),
        ("operations", "/operations/"),
    ]


def run() -> None:
    from selenium.webdriver.common.by import By

    # Pages name their static files by the manifest's hashed names; WhiteNoise serves the
    # collected files (as under gunicorn), read when the first request builds the middleware.
    call_command("collectstatic", "--noinput", verbosity=0)
    org = bench_org()
    load(org)
    demo_scores(org)
    staff_user(org)
    server = make_server("127.0.0.1", 0, get_wsgi_application(),
                         server_class=ThreadedServer, handler_class=QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    OUT.mkdir(parents=True, exist_ok=True)
    driver = browser()
    try:
        driver.get(f"{base}/sign-in/")
        driver.find_element(By.ID, "id_username").send_keys(USER)
        driver.find_element(By.ID, "id_password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        for name, path in pages(org.id):
            driver.get(base + path)
            time.sleep(0.5)  # charts draw on load; let them settle
            if "Not Found" in driver.title or "being built" in driver.page_source:
                print(f"  {name}: {path} is not there (yet), skipped", flush=True)
                continue
            target = OUT / f"{name}.png"
            driver.save_screenshot(str(target))
            shrink(target)
            print(f"  wrote {target.relative_to(ROOT)} ({target.stat().st_size // 1024} KB)",
                  flush=True)
    finally:
        driver.quit()
        server.shutdown()
