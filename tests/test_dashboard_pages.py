"""The trace pages through Django's test client, over spans posted through the API and
drained into ClickHouse: what each page shows, and that every read is bound to the org."""

import pytest

from dashboard.models import Membership
from ingestion.models import ApiKey, Org
from tests.dashboard_data import minutes_ago, new_trace_id, post, span
from tests.ingest_helpers import client_for
from tests.test_dashboard_access import create_user, signed_in

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def team():
    password = create_user("pages@example.com", f"pg-{new_trace_id()[:8]}", "viewer")
    org = Membership.objects.get(user__username="pages@example.com").org
    return org, signed_in("pages@example.com", password)


def test_the_list_shows_the_orgs_traces_with_their_figures(team):
    org, client = team
    tid = new_trace_id()
    start = minutes_ago(30)
    post(org, [span(tid, 0, start=start, name="answer-question"),
               span(tid, 1, start=start, parent=f"{tid}-s0", name="llm call",
                    status="error", status_message="rate limited")])
    page = client.get("/traces/").content.decode()
    assert "answer-question" in page and f'data-trace="{tid}"' in page
    assert ">error</span>" in page
    assert "1 trace on this page" in page


def test_an_empty_org_is_told_how_to_send_a_trace(team):
    _, client = team
    page = client.get("/traces/").content.decode()
    assert "No traces yet" in page and "curl" in page and "/api/v1/spans" in page


def test_a_bad_filter_is_named(team):
    _, client = team
    page = client.get("/traces/?range=custom&from=yesterday").content.decode()
    assert "from:" in page and "No traces yet" not in page


def test_another_orgs_trace_and_session_are_not_found(team):
    org, client = team
    other = Org.objects.create(slug=f"pg-other-{new_trace_id()[:8]}")
    tid = new_trace_id()
    post(other, [span(tid, 0, start=minutes_ago(20), name="their secret")])
    assert client.get(f"/traces/{tid}").status_code == 404
    assert client.get(f"/span/?trace={tid}&span={tid}-s0").status_code == 404
    assert client.get(f"/session/?id=sess-{tid}").status_code == 404
    assert "their secret" not in client.get("/traces/").content.decode()


def test_the_trace_page_shows_the_tree_and_the_chosen_span(team):
    org, client = team
    tid = new_trace_id()
    start = minutes_ago(10)
    post(org, [span(tid, 0, start=start, name="root step"),
               span(tid, 1, start=start, parent=f"{tid}-s0", name="child call",
                    input={"messages": [{"role": "system", "content": "be brief"},
                                        {"role": "user", "content": "what is 2+2?"}]},
                    output={"answer": 4, "sure": True, "notes": None}),
               span(tid, 2, start=start, parent=f"{tid}-s1", name="grandchild")])
    page = client.get(f"/traces/{tid}").content.decode()
    assert page.count('class="tree-row"') == 3
    assert f'data-span="{tid}-s0"' in page and 'aria-selected="true"' in page
    panel = client.get(f"/span/?trace={tid}&span={tid}-s1").content.decode()
    assert "child call" in panel and 'class="msg system"' in panel
    assert "what is 2+2?" in panel and '<span class="k">&quot;answer&quot;</span>' in panel
    assert "computed" in panel or "unpriced" in panel  # how the cost came about
    assert client.get(f"/traces/{tid}?span={tid}-s2").content.decode().count(
        'id="span-title">grandchild') == 1


def test_the_session_page_lists_its_traces_in_order_with_totals(team):
    org, client = team
    first, second = new_trace_id(), new_trace_id()
    post(org, [span(first, 0, start=minutes_ago(9), name="turn one", session_id="chat-42"),
               span(second, 0, start=minutes_ago(5), name="turn two", session_id="chat-42")])
    page = client.get("/session/?id=chat-42").content.decode()
    assert page.index("turn one") < page.index("turn two")
    assert '<b id="turn-count">2</b>' in page
    turn = client.get(f"/session/turn?trace={first}").content.decode()
    assert "question 0" in turn and "answer 0" in turn
    assert "chat-42" in client.get("/sessions/").content.decode()


def test_pages_and_the_api_share_one_cached_answer(team):
    org, client = team
    tid = new_trace_id()
    post(org, [span(tid, 0, start=minutes_ago(4), name="shared read")])
    assert client.get(f"/traces/{tid}").status_code == 200  # the page computes and caches
    _, raw = ApiKey.issue(org)
    answer = client_for(raw).get(f"/api/v1/traces/{tid}")
    assert answer.status_code == 200 and answer["X-Cache"] in ("l1", "l2")
    assert answer.json()["name"] == "shared read"


def test_scores_show_in_the_list_and_on_their_span(team):
    org, client = team
    tid = new_trace_id()
    post(org, [span(tid, 0, start=minutes_ago(6), name="scored answer")])
    _, raw = ApiKey.issue(org)
    sent = client_for(raw).post("/api/v1/scores", {"scores": [
        {"trace_id": tid, "span_id": f"{tid}-s0", "name": "helpfulness", "value": 0.75,
         "comment": "mostly right"}]}, format="json")
    assert sent.status_code == 201, sent.content
    row = client.get("/traces/").content.decode()
    assert "helpfulness 0.75" in row
    panel = client.get(f"/span/?trace={tid}&span={tid}-s0").content.decode()
    assert "helpfulness" in panel and "mostly right" in panel and "0.750" in panel


def test_session_lengths_read_as_people_say_them():
    from dashboard.views.sessions import duration_text

    assert [duration_text(s) for s in (4.24, 192, 18120, 1984569.3)] == [
        "4.2 s", "3 min 12 s", "5 h 2 min", "22 d 23 h"]


def test_a_session_turn_shows_the_words_of_an_agent_whose_root_has_none(team):
    org, client = team
    tid = new_trace_id()
    start = minutes_ago(7)
    post(org, [span(tid, 0, start=start, name="agent", input=None, output=None),
               span(tid, 1, start=start, parent=f"{tid}-s0", name="llm",
                    input=[{"role": "user", "content": "book a table for two"}],
                    output="Booked for 8 pm.")])
    turn = client.get(f"/session/turn?trace={tid}").content.decode()
    assert "book a table for two" in turn and "Booked for 8 pm." in turn


def test_custom_window_user_session_and_tag_filters(team):
    from urllib.parse import urlencode

    from tests.dashboard_data import iso

    org, client = team
    old, new, other = new_trace_id(), new_trace_id(), new_trace_id()
    post(org, [span(old, 0, start=minutes_ago(180), name="three hours ago"),
               span(new, 0, start=minutes_ago(30), name="half an hour ago", tags=["beta"],
                    user_id="ann", session_id="s-ann"),
               span(other, 0, start=minutes_ago(20), name="someone else", user_id="bob")])

    def names(**query) -> list[str]:
        page = client.get("/traces/?" + urlencode(query)).content.decode()
        return [n for n in ("three hours ago", "half an hour ago", "someone else") if n in page]

    window = {"range": "custom", "from": iso(minutes_ago(120)), "to": iso(minutes_ago(25))}
    assert names(**window) == ["half an hour ago"]
    assert names(range="1h") == ["half an hour ago", "someone else"]
    assert names(range="24h") == ["three hours ago", "half an hour ago", "someone else"]
    assert names(user_id="ann") == ["half an hour ago"]
    assert names(session_id="s-ann") == ["half an hour ago"]
    assert names(tag="beta") == ["half an hour ago"]
    assert names(user_id="bob", tag="beta") == []
