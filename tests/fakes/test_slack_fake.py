"""Drive FakeSlack through a real slack_sdk WebClient, as the product does."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from tests.fakes.slack import FakeSlack

TOKEN = "xoxb-test"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(token=TOKEN) as fake:
        fake.add_user("U111", "ada@example.com", first_name="Ada", real_name="Ada Lovelace")
        yield fake


def client_for(slack: FakeSlack, **kwargs: object) -> WebClient:
    return WebClient(base_url=slack.url, token=TOKEN, **kwargs)  # type: ignore[arg-type]


def test_auth_test_reports_bot_and_scopes(slack: FakeSlack) -> None:
    response = client_for(slack).auth_test()

    assert response["user_id"] == slack.bot_user_id
    assert response.headers["x-oauth-scopes"] == slack.scopes
    assert slack.calls_to("auth.test")[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_wrong_token_is_invalid_auth(slack: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as raised:
        WebClient(base_url=slack.url, token="xoxb-wrong").auth_test()

    assert raised.value.response["error"] == "invalid_auth"


def test_users_lookup_by_email_and_info(slack: FakeSlack) -> None:
    client = client_for(slack)

    user = client.users_lookupByEmail(email="ada@example.com")["user"]
    assert user["id"] == "U111"
    assert user["profile"]["first_name"] == "Ada"
    assert client.users_info(user="U111")["user"]["real_name"] == "Ada Lovelace"
    with pytest.raises(SlackApiError, match="users_not_found"):
        client.users_lookupByEmail(email="ADA@example.com")  # exact match only
    with pytest.raises(SlackApiError, match="user_not_found"):
        client.users_info(user="U999")


def test_lookup_by_email_needs_scope() -> None:
    with (
        FakeSlack(token=TOKEN, scopes="chat:write,users:read") as slack,
        pytest.raises(SlackApiError) as raised,
    ):
        client_for(slack).users_lookupByEmail(email="ada@example.com")

    assert raised.value.response["error"] == "missing_scope"
    assert raised.value.response["needed"] == "users:read.email"


def test_post_to_user_lands_in_dm_and_can_be_updated(slack: FakeSlack) -> None:
    client = client_for(slack)
    assert client.conversations_open(users="U111")["channel"]["id"] == "D111"
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]

    posted = client.chat_postMessage(channel="U111", text="hi", blocks=blocks)
    assert posted["channel"] == "D111"
    client.chat_update(channel="D111", ts=posted["ts"], text="bye")

    [message] = slack.messages("D111")
    assert (message["text"], message["blocks"], message["ts"]) == ("bye", blocks, posted["ts"])
    assert message["revisions"][0]["text"] == "hi"
    assert slack.all_posts() == [message]


def test_update_errors(slack: FakeSlack) -> None:
    client = client_for(slack)
    ts = client.chat_postMessage(channel="U111", text="hi")["ts"]

    with pytest.raises(SlackApiError, match="channel_not_found"):
        client.chat_update(channel="U111", ts=ts, text="x")
    with pytest.raises(SlackApiError, match="message_not_found"):
        client.chat_update(channel="D111", ts="1.000000", text="x")


def test_post_validation(slack: FakeSlack) -> None:
    client = client_for(slack)
    slack.add_channel("C100", "alerts")

    with pytest.raises(SlackApiError, match="channel_not_found"):
        client.chat_postMessage(channel="C999", text="hi")
    with pytest.raises(SlackApiError, match="invalid_blocks"):
        client.chat_postMessage(channel="C100", text="hi", blocks=[{"type": "divider"}] * 51)
    first = client.chat_postMessage(channel="C100", text="one")["ts"]
    second = client.chat_postMessage(channel="C100", text="two")["ts"]
    assert float(second) > float(first)


def test_form_encoded_json_fields_are_decoded(slack: FakeSlack) -> None:
    blocks = [{"type": "divider"}]
    metadata = {"event_type": "nudge", "event_payload": {"id": 7}}

    client_for(slack).api_call(
        "chat.postMessage",
        data={
            "channel": "D111",
            "text": "hi",
            "blocks": json.dumps(blocks),
            "metadata": json.dumps(metadata),
        },
    )

    [message] = slack.messages("U111")
    assert (message["blocks"], message["metadata"]) == (blocks, metadata)


def test_history_is_newest_first_and_metadata_is_opt_in(slack: FakeSlack) -> None:
    client = client_for(slack)
    metadata = {"event_type": "nudge", "event_payload": {"id": 7}}
    client.chat_postMessage(channel="D111", text="old", metadata=metadata)
    client.chat_postMessage(channel="D111", text="new")

    plain = client.conversations_history(channel="D111")["messages"]
    full = client.conversations_history(channel="D111", include_all_metadata=True)["messages"]

    assert [m["text"] for m in plain] == ["new", "old"]
    assert "metadata" not in plain[1]
    assert full[1]["metadata"] == metadata


def test_rate_limit_is_retried_by_slack_sdk(slack: FakeSlack) -> None:
    slack.fail("chat.postMessage", retry_after=0)
    client = client_for(slack, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])

    client.chat_postMessage(channel="D111", text="hi")

    assert len(slack.calls_to("chat.postMessage")) == 2
    assert len(slack.messages("D111")) == 1


def test_rate_limit_without_retry_surfaces_429(slack: FakeSlack) -> None:
    slack.fail("chat.postMessage", retry_after=3)

    with pytest.raises(SlackApiError) as raised:
        client_for(slack).chat_postMessage(channel="D111", text="hi")

    assert raised.value.response.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "3"
    assert raised.value.response["error"] == "ratelimited"


@pytest.mark.parametrize(("status", "error"), [(200, "fatal_error"), (503, "service_unavailable")])
def test_injected_errors(slack: FakeSlack, status: int, error: str) -> None:
    slack.fail("users.info", error=error, status=status)

    with pytest.raises(SlackApiError) as raised:
        client_for(slack).users_info(user="U111")

    assert (raised.value.response.status_code, raised.value.response["error"]) == (status, error)
    assert client_for(slack).users_info(user="U111")["ok"]


def test_hang_delays_only_that_call_and_stop_does_not_wait(slack: FakeSlack) -> None:
    slack.hang("auth.test", seconds=30)
    with pytest.raises(TimeoutError):
        client_for(slack, timeout=1, retry_handlers=[]).auth_test()

    assert client_for(slack).users_info(user="U111")["ok"]  # answered while auth.test hangs
    started = time.monotonic()
    slack.stop()
    assert time.monotonic() - started < 5


def test_drop_after_effect_stores_the_message(slack: FakeSlack) -> None:
    slack.drop("chat.postMessage")

    with pytest.raises(Exception, match="Remote end closed"):
        client_for(slack, retry_handlers=[]).chat_postMessage(channel="U111", text="hi")

    assert [m["text"] for m in slack.messages("U111")] == ["hi"]


def test_default_client_retries_a_dropped_post_and_duplicates_it(slack: FakeSlack) -> None:
    slack.drop("chat.postMessage")

    client_for(slack).chat_postMessage(channel="U111", text="hi")

    assert [m["text"] for m in slack.all_posts()] == ["hi", "hi"]


def test_response_url_sink(slack: FakeSlack) -> None:
    request = urllib.request.Request(
        slack.response_url("abc"),
        data=json.dumps({"text": "done"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.load(response) == {"ok": True}

    slack.wait_for(lambda: "abc" in slack.responses)
    assert slack.responses["abc"] == [{"text": "done"}]


def test_wait_for_times_out(slack: FakeSlack) -> None:
    with pytest.raises(AssertionError, match="never"):
        slack.wait_for(lambda: False, timeout=0.05, message="never")
