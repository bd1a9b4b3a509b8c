"""Config flags that act: each registered flag changes the behaviour it names, end to end
(API, real drain, evaluation queue, query caches), and the flag cache has no race between a
change and a read."""

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connections

from costs.models import Price
from ingestion.query.views import hot_traces
from operations.models import ConfigFlag
from operations.services import flags
from operations.services.flags import FLAGS, flag, flag_for, forget_cached_flags, org_key
from tests.eval_helpers import new_config, queued_items, reset_evaluation_state
from tests.ingest_helpers import (
    client_for,
    drain_everything,
    make_span,
    new_org,
    post_spans,
    stored_spans,
)

# Flags, prices and orgs must be committed: the drainer reads them through its own connections.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_flags():
    ConfigFlag.objects.all().delete()
    forget_cached_flags()
    yield
    ConfigFlag.objects.all().delete()
    forget_cached_flags()


def set_flag(key: str, type_: str, value: str) -> None:
    ConfigFlag.objects.update_or_create(key=key, defaults={"type": type_, "value": value})
    forget_cached_flags()  # the save announces it on commit too; no wait on pub/sub here


def recent_span(trace_id: str, index: int, **overrides) -> dict:
    start = datetime.now(UTC) - timedelta(minutes=10) + timedelta(seconds=index)
    return make_span(trace_id, index, start_time=start.isoformat(),
                     end_time=(start + timedelta(milliseconds=300)).isoformat(), **overrides)


def test_content_storage_flag_off_for_an_org_stores_its_spans_without_content():
    Price.objects.create(provider="acme", model_name="flag-chat", model_pattern="flag-chat",
                         input_price=Decimal("2"), output_price=Decimal("8"))
    drain_everything()
    org, key = new_org()
    other, other_key = new_org()
    set_flag(org_key("content-storage-enabled", org.id), "bool", "false")
    span = dict(model="flag-chat", provider="acme", usage=None, input="Hello there, tell me",
                output="a story")
    assert post_spans(client_for(key), [recent_span("c", 0, **span)]).status_code == 202
    assert post_spans(client_for(other_key), [recent_span("c", 0, **span)]).status_code == 202
    drain_everything()
    [row] = stored_spans(org.id)
    [kept] = stored_spans(other.id)
    assert not row["input_content"] and not row["output_content"]
    assert kept["input_content"] and kept["output_content"]
    # Tokens counted before the content was dropped: priced the same as with content.
    assert (row["input_tokens"], row["output_tokens"]) == (
        kept["input_tokens"], kept["output_tokens"])
    assert row["input_tokens"] > 0 and row["usage_source"] == "estimated"
    assert (row["cost"], row["cost_source"]) == (kept["cost"], "computed")


def test_evaluations_flag_off_queues_no_evaluation_for_that_org():
    reset_evaluation_state()
    org, key = new_org()
    other, other_key = new_org()
    new_config(org, "regex", pattern=r"answer \d+")
    new_config(other, "regex", pattern=r"answer \d+")
    set_flag(org_key("evaluations-enabled", org.id), "bool", "false")
    for raw in (key, other_key):
        assert post_spans(client_for(raw), [recent_span("e", 0)]).status_code == 202
    drain_everything()
    queued_orgs = {item["org_id"] for item in queued_items()}
    assert queued_orgs == {other.id}
    # Globally off: nobody's evaluations are queued.
    reset_evaluation_state()
    set_flag("evaluations-enabled", "bool", "false")
    assert post_spans(client_for(other_key), [recent_span("e2", 0)]).status_code == 202
    drain_everything()
    assert queued_items() == []


def test_sample_rate_flag_overrides_the_orgs_rate_and_an_org_value_wins():
    org, key = new_org(sample_rate=1.0)
    spans = [recent_span(f"s{i}", 0) for i in range(20)]
    set_flag("sample-rate", "float", "0")
    body = post_spans(client_for(key), spans).json()
    assert (body["accepted"], body.get("sampled_out")) == (20, 20)
    set_flag(org_key("sample-rate", org.id), "float", "1")
    body = post_spans(client_for(key), spans).json()
    assert body.get("sampled_out", 0) == 0


def test_query_cache_flag_off_computes_every_answer_afresh():
    cache.clear()
    hot_traces.clear()
    org, key = new_org()
    client = client_for(key)
    assert post_spans(client, [recent_span("q", 0)]).status_code == 202
    drain_everything()
    paths = ["/api/v1/traces", "/api/v1/traces/q", "/api/v1/spans", "/api/v1/metrics",
             "/api/v1/costs"]
    set_flag(org_key("query-cache-enabled", org.id), "bool", "false")
    for path in paths:
        for _ in range(2):
            response = client.get(path)
            assert (response.status_code, response["X-Cache"]) == (200, "bypass"), path
    set_flag(org_key("query-cache-enabled", org.id), "bool", "true")
    for path in paths:
        assert client.get(path)["X-Cache"] == "miss", path
        assert client.get(path)["X-Cache"] in ("l1", "l2"), path


def test_every_registered_flag_is_documented_and_read_by_production_code():
    readme = (Path(settings.BASE_DIR) / "README.md").read_text()
    sources = "".join(path.read_text() for app in ("ingestion", "evaluation", "costs")
                      for path in (Path(settings.BASE_DIR) / app).rglob("*.py"))
    for name, registered in FLAGS.items():
        assert f"`{name}`" in readme, name
        assert f'flag_for("{name}"' in sources, name
        assert flag_for(name) == registered.default


def test_a_registered_flag_must_have_its_type():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="bool flag"):
        ConfigFlag(key="evaluations-enabled-org-3", type="str", value="false").full_clean()
    with pytest.raises(ValidationError, match="between 0 and 1"):
        ConfigFlag(key="sample-rate", type="float", value="1.5").full_clean()
    ConfigFlag(key="sample-rate-org-3", type="float", value="0.5").full_clean()
    ConfigFlag(key="my-own-flag", type="str", value="anything").full_clean()


class ChangeDuring:
    """A TTL the cache compares against: the comparison runs the change listener's callback
    (as the listener thread could, at that very moment), then answers "still fresh"."""

    def __init__(self, callback) -> None:
        self.callback = callback

    def _fire(self, _other) -> bool:
        self.callback()
        return True

    __lt__ = __gt__ = __le__ = __ge__ = _fire


def test_a_change_between_the_check_and_the_read_does_not_break_the_read(settings):
    set_flag("batch", "int", "1")
    assert flag("batch") == 1
    settings.CONFIG_CACHE_TTL_S = ChangeDuring(flags.forget_cached_flags)
    # The old cache checked `_cache`, then read `_cache[1]`: cleared in between, it failed.
    assert flag("batch") == 1


def test_a_change_announced_while_flags_load_is_not_lost():
    set_flag("batch", "int", "1")
    loading, changed = threading.Event(), threading.Event()
    original = ConfigFlag.typed_value

    def slow_typed_value(self):
        loading.set()
        assert changed.wait(10)
        return original(self)

    def operator_changes_it():
        try:
            assert loading.wait(10)
            ConfigFlag.objects.filter(key="batch").update(value="2")
            flags.forget_cached_flags()  # what the listener does when the change is announced
        finally:
            changed.set()
            connections.close_all()

    operator = threading.Thread(target=operator_changes_it)
    operator.start()
    ConfigFlag.typed_value = slow_typed_value
    try:
        assert flag("batch") in (1, 2)  # loaded during the change: either is fair
    finally:
        ConfigFlag.typed_value = original
        operator.join()
    # The snapshot loaded before the change must not be served for CONFIG_CACHE_TTL_S.
    assert flag("batch") == 2


def test_flags_are_read_from_the_last_load_while_postgresql_is_unreachable():
    set_flag(org_key("content-storage-enabled", 7), "bool", "false")
    assert flag_for("content-storage-enabled", 7) is False
    connection = connections["default"]
    port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = 1  # nothing listens there: every query fails
    try:
        forget_cached_flags()  # a change was announced: the next read must load
        assert flag_for("content-storage-enabled", 7) is False  # the last ones read
        assert flag_for("evaluations-enabled", 7) is True
    finally:
        connection.close()
        connection.settings_dict["PORT"] = port
    assert flag_for("content-storage-enabled", 7) is False


def test_the_accept_path_reads_flags_from_memory_not_the_database():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from llmops import changes

    _, key = new_org()
    # Saved without the change announcement, whose echo from pub/sub would reload them
    # during the requests below (as it should: that is a change).
    ConfigFlag.objects.bulk_create([ConfigFlag(key="sample-rate", type="float", value="1")])
    forget_cached_flags()
    assert flag_for("sample-rate", 1) == 1.0  # loads them, and starts the listener
    assert changes.listening.wait(10)
    client = client_for(key)
    assert post_spans(client, [recent_span("m", 0)]).status_code == 202
    with CaptureQueriesContext(connection) as queries:
        for index in range(1, 4):
            assert post_spans(client, [recent_span("m", index)]).status_code == 202
    assert not [q["sql"] for q in queries.captured_queries if "configflag" in q["sql"]]


def test_the_admin_says_which_flags_the_platform_reads(admin_client):
    page = admin_client.get("/admin/operations/configflag/add/")
    assert page.status_code == 200
    for name in FLAGS:
        assert name in page.content.decode(), name
