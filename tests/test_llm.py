"""The LLM summary against a fake OpenAI-compatible server over HTTP (SPEC 5; F07, F10, F16).

The product reaches the fake through its normal configuration (OPENAI_API_KEY, OPENAI_BASE_URL)
and the official client; the right value of each case is the summary that comes back and the
number of requests the fake received.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.errors import ConfigError
from bot.grounding import bullet_lines, ungrounded
from bot.llm import OpenAISummariser, build_summariser
from bot.prompt import SYSTEM
from bot.summary import SummaryInput, TemplateSummariser
from bot.usage import UsageRow
from tests.conftest import Clock
from tests.fakes.openai import DEFAULT_ANSWER, FakeOpenAI, JsonDict
from tests.fakes.slack import FakeSlack
from tests.harness import Harness
from tests.slackapp import SlackApp
from tests.test_commands import SUMMARY, run, shown
from tests.warehouses import account

TODAY = date(2026, 12, 3)
LLM_LINE = "• Usage is climbing fast: a good moment for an *upgrade* conversation."
LLM_TEXT = f"{LLM_LINE}\n• Ask how the team plans to grow."


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    """The fake OpenAI endpoint on a random local port."""
    with FakeOpenAI() as fake:
        yield fake


def settings_for(llm: FakeOpenAI, tmp_path: Path | None = None, **summary: Any) -> Settings:
    """LLM settings pointing at the fake; a 1-second timeout unless told otherwise."""
    return Settings(
        openai_api_key="sk-test-key",
        openai_base_url=llm.url,
        columns={"fields": ["plan", "last_activity_date"]},
        summary={"timeout_s": 1, **summary},
        config_dir=str(tmp_path or ""),
    )


def data(n: int = 1, used: int = 41, quota: int = 50, **extra: Any) -> SummaryInput:
    """Account n: 41 of 50 h (82 %), on the starter plan, last active 5 days ago."""
    row = UsageRow(
        account_id=f"001{n:015d}",
        account_name=f"Account {n}",
        domain=f"account{n}.example",
        owner_id=None,
        numerator=Decimal(used),
        denominator=Decimal(quota),
        fields={"plan": "starter", "last_activity_date": date(2026, 11, 28)},
    )
    return SummaryInput(row, "h", TODAY, Decimal(75), **extra)


def template(n: int = 1) -> str:
    return TemplateSummariser().summarise(data(n))


def sent(llm: FakeOpenAI) -> str:
    """Every request body the fake received, as one JSON text."""
    return json.dumps([r.body for r in llm.requests])


# --- answers and failures ------------------------------------------------------------------


def test_an_answer_becomes_escaped_mrkdwn_bullets_from_one_request(llm: FakeOpenAI) -> None:
    llm.answer = "- Used **41 of 50 h** (82%)\n* 9 h left\n• Last active 5 days ago"
    summary = OpenAISummariser(settings_for(llm)).summarise(data())
    assert summary == "• Used *41 of 50 h* (82%)\n• 9 h left\n• Last active 5 days ago"
    [request] = llm.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test-key"
    assert request.body["model"] == "gpt-4o-mini"
    assert request.body["messages"][0] == {"role": "system", "content": SYSTEM}
    prompt = request.user_prompt
    for line in ("- used: 41 h", "- quota: 50 h", "- usage_pct: 82 %", "- left_in_quota: 9 h"):
        assert line in prompt
    assert "- days_since_last_activity_date: 5" in prompt and "- plan: starter" in prompt
    assert "free hours quota" in prompt  # [rule] quota_label


def test_the_system_prompt_vouches_for_no_number() -> None:
    assert not any(ch.isdigit() for ch in SYSTEM)


def test_a_slow_answer_costs_one_timeout_then_the_run_uses_the_template(
    llm: FakeOpenAI,
) -> None:
    llm.slow(10, times=10)
    summariser = OpenAISummariser(settings_for(llm, timeout_s=0.5))
    summaries = summariser.summarise_many([data(1), data(2), data(3)], concurrency=1)
    assert summaries == [template(1), template(2), template(3)]
    assert len(llm.requests) == 1  # no retry after a timeout, no further call that run


def test_a_hung_endpoint_costs_side_by_side_calls_one_timeout_wave(llm: FakeOpenAI) -> None:
    llm.slow(3600, times=16)
    summariser = OpenAISummariser(settings_for(llm, timeout_s=0.5))
    summaries = summariser.summarise_many([data(n) for n in range(16)], concurrency=8)
    assert summaries == [template(n) for n in range(16)]
    assert len(llm.requests) <= 8  # those already in flight; none started after the timeout


def test_a_new_run_tries_the_llm_again(llm: FakeOpenAI) -> None:
    summariser = OpenAISummariser(settings_for(llm, timeout_s=0.5))
    llm.slow(10)
    run = summariser.for_run()
    assert run.summarise(data(1)) == template(1)
    assert run.summarise(data(2)) == template(2)
    assert "no answer within 0.5 s" in run.stopped
    assert summariser.summarise_many([data(3)]) == [LLM_TEXT]
    assert len(llm.requests) == 2


def test_an_endpoint_that_never_answers_is_bounded_with_the_client_retries_configured(
    llm: FakeOpenAI,
) -> None:
    llm.slow(3600, times=3)
    summariser = OpenAISummariser(settings_for(llm, timeout_s=0.3))
    assert summariser.summarise(data()) == template()
    assert len(llm.requests) == 1


def test_an_answer_dripping_in_byte_by_byte_is_cut_off_at_the_timeout(llm: FakeOpenAI) -> None:
    llm.drip(0.05)  # every read gets a byte in time: only a deadline for the whole answer helps
    summariser = OpenAISummariser(settings_for(llm, timeout_s=0.5))
    summaries = summariser.summarise_many([data(1), data(2)], concurrency=1)
    assert summaries == [template(1), template(2)]
    assert len(llm.requests) == 1


def test_a_500_then_200_gives_the_llm_summary(llm: FakeOpenAI) -> None:
    llm.fail(500)
    assert OpenAISummariser(settings_for(llm)).summarise(data()) == LLM_TEXT
    assert len(llm.requests) == 2


def test_5xx_after_two_retries_gives_the_template_but_the_run_goes_on(llm: FakeOpenAI) -> None:
    llm.fail(503, times=3)
    summariser = OpenAISummariser(settings_for(llm))
    summaries = summariser.summarise_many([data(1), data(2)], concurrency=1)
    assert summaries == [template(1), LLM_TEXT]
    assert len(llm.requests) == 4  # 1 + 2 retries, then the next account


def test_usage_summary_makes_one_request_and_no_retry(llm: FakeOpenAI) -> None:
    llm.fail(500)
    summariser = OpenAISummariser(settings_for(llm), interactive=True)
    assert summariser.summarise(data()) == template()
    assert len(llm.requests) == 1


def test_a_429_with_retry_after_is_waited_out(llm: FakeOpenAI) -> None:
    llm.rate_limited(retry_after=1)
    assert OpenAISummariser(settings_for(llm, timeout_s=5)).summarise(data()) == LLM_TEXT
    assert len(llm.requests) == 2


def test_a_429_asking_to_wait_longer_than_the_timeout_is_not_retried(llm: FakeOpenAI) -> None:
    llm.rate_limited(retry_after=30)
    assert OpenAISummariser(settings_for(llm, timeout_s=2)).summarise(data()) == template()
    assert len(llm.requests) == 1


def test_insufficient_quota_stops_the_run_after_one_request(llm: FakeOpenAI) -> None:
    llm.insufficient_quota(times=5)
    summariser = OpenAISummariser(settings_for(llm))
    summaries = summariser.summarise_many([data(1), data(2), data(3)], concurrency=1)
    assert summaries == [template(1), template(2), template(3)]
    assert len(llm.requests) == 1


def test_a_refused_key_stops_the_run_after_one_request(llm: FakeOpenAI) -> None:
    llm.fail(401, times=5)
    summariser = OpenAISummariser(settings_for(llm))
    summaries = summariser.summarise_many([data(1), data(2), data(3)], concurrency=1)
    assert summaries == [template(1), template(2), template(3)]
    assert len(llm.requests) == 1


def test_an_unreachable_endpoint_stops_the_run(llm: FakeOpenAI) -> None:
    settings = settings_for(llm).model_copy(update={"openai_base_url": "http://127.0.0.1:9/v1"})
    run = OpenAISummariser(settings).for_run()
    assert run.summarise_many([data(1), data(2)], concurrency=1) == [template(1), template(2)]
    assert "cannot reach OPENAI_BASE_URL" in run.stopped


def test_an_invented_number_discards_the_whole_summary_and_is_logged(
    llm: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    llm.answer = "- Used 82% of the quota\n- Likely to buy 40 more seats"
    with caplog.at_level(logging.WARNING, logger="bot.llm"):
        assert OpenAISummariser(settings_for(llm)).summarise(data()) == template()
    assert "not in its input: 40" in caplog.text and "001000000000000001" in caplog.text


def test_a_broadcast_in_the_answer_is_inert(llm: FakeOpenAI) -> None:
    llm.answer = "- <!channel> usage is critical & <@U123> should call <https://evil.example|now>"
    summary = OpenAISummariser(settings_for(llm)).summarise(data())
    assert summary == (
        "• &lt;!channel&gt; usage is critical &amp; &lt;@U123&gt; should call "
        "&lt;https://evil.example|now&gt;"
    )


def test_a_long_answer_keeps_whole_bullets_up_to_100_words(llm: FakeOpenAI) -> None:
    llm.answer = "\n".join(f"- {' '.join(['word'] * 30)}" for _ in range(5))
    summary = OpenAISummariser(settings_for(llm)).summarise(data())
    assert summary.count("• ") == 3 and len(summary.split()) - 3 == 90


# --- grounding -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "given", "grounded"),
    [
        ("1,200 hours used", "used: 1200 h", True),
        ("1200 hours used", "used: 1,200 h", True),
        ("82% of the quota", "usage_pct: 82.4 %", True),
        ("82 % of the quota", "usage_pct: 81.6 %", True),
        ("82% of the quota", "usage_pct: 82.9 %", True),  # truncated, as Nudge floors percents
        ("82.4% of the quota", "usage_pct: 82.4 %", True),
        ("82.5% of the quota", "usage_pct: 82.4 %", False),
        ("83% of the quota", "usage_pct: 82.4 %", False),
        ("$1.2M revenue", "AnnualRevenue: 1,234,567", True),
        ("$1.2 million revenue", "AnnualRevenue: 1200000", True),
        ("$1.3M revenue", "AnnualRevenue: 1,234,567", False),
        ("2.5k users", "users: 2500", True),
        ("2.5K users", "users: 2,450", True),
        ("3 million events", "events: 3,000,000", True),
        ("last active 5 days ago", "days_since_last_activity_date: 5", True),
        ("last active 6 days ago", "days_since_last_activity_date: 5", False),
        ("40 more seats", "used: 41 h", False),
        ("a Q4 B2B deal with 12 months to go", "used: 41 h", False),
        ("a Q4 B2B deal", "used: 41 h", True),
        ("12 months", "12-month contract", True),
    ],
)
def test_grounding_normalises_numbers_and_rounds_to_the_precision_written(
    output: str, given: str, grounded: bool
) -> None:
    assert (ungrounded(output, [given]) == []) is grounded


def test_answer_lines_lose_markers_lead_ins_headings_and_markdown() -> None:
    answer = (
        "Here is the summary:\n## Summary\n```\n1. **Acme** is at 82%\n2) See [the docs](https://x)"
        "\n+ plus\n\n__Call__ them"
    )
    assert bullet_lines(answer) == ["*Acme* is at 82%", "See the docs", "plus", "*Call* them"]


# --- what leaves, and the prompt -----------------------------------------------------------


def test_by_default_only_usage_fields_account_name_and_columns_fields_leave(
    llm: FakeOpenAI,
) -> None:
    crm = {"Description": "CRM-SECRET", "Industry": "Retail"}
    OpenAISummariser(settings_for(llm)).summarise(data(account=crm))
    body = sent(llm)
    assert "Account 1" in body and "starter" in body and "82 %" in body
    assert "CRM-SECRET" not in body and "Retail" not in body and "account1.example" not in body


def test_send_fields_is_an_allow_list(llm: FakeOpenAI) -> None:
    settings = settings_for(llm, send_fields=["usage_pct", "Industry"])
    crm = {"Description": "CRM-SECRET", "Industry": "Retail"}
    OpenAISummariser(settings).summarise(data(account=crm))
    prompt = llm.requests[0].user_prompt
    facts = [line for line in prompt.splitlines() if line.startswith("- ")]
    assert facts == ["- usage_pct: 82 %", "- Industry: Retail"]
    body = sent(llm)
    for secret in ("Account 1", "starter", "CRM-SECRET", "account1.example", "41 h"):
        assert secret not in body


def test_an_unknown_send_field_is_a_startup_error(llm: FakeOpenAI) -> None:
    with pytest.raises(ConfigError, match=r"send_fields: unknown field.*revenue"):
        OpenAISummariser(settings_for(llm, send_fields=["revenue"]))


def test_disabled_never_calls_the_llm(llm: FakeOpenAI) -> None:
    settings = settings_for(llm, enabled=False)
    assert isinstance(build_summariser(settings), TemplateSummariser)
    summariser = OpenAISummariser(settings)
    assert summariser.summarise(data()) == template()
    assert summariser.summarise_many([data(1), data(2)]) == [template(1), template(2)]
    assert llm.requests == []


def test_without_an_api_key_the_template_is_used() -> None:
    assert isinstance(build_summariser(Settings()), TemplateSummariser)
    assert isinstance(build_summariser(Settings(openai_api_key="")), TemplateSummariser)


def test_a_prompt_file_is_rendered_with_the_fields(llm: FakeOpenAI, tmp_path: Path) -> None:
    (tmp_path / "prompt.txt").write_text(
        "{{ account_name }} ({{ plan | upper }}) used {{ usage_pct }}; quiet for "
        "{{ days_since_last_activity_date }} days.{% for name, value in facts %} {{ name }}"
        "{% endfor %}"
    )
    settings = settings_for(llm, tmp_path, prompt_file="prompt.txt")
    assert OpenAISummariser(settings).summarise(data()) == LLM_TEXT
    assert llm.requests[0].user_prompt.startswith(
        "Account 1 (STARTER) used 82 %; quiet for 5 days. account_name used quota usage_pct"
    )


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("{{ ''.__class__.__mro__ }}", "unsafe"),
        ("{{ cycler.__init__.__globals__ }}", "unsafe"),
        ("{{ facts.__class__.__subclasses__() }}", "unsafe"),
        ("Revenue: {{ AnnualRevenue }}", "AnnualRevenue"),  # not an allowed field
        ("{{ domain }}", "domain"),
        ("{% if %}", "TemplateSyntaxError"),
    ],
)
def test_a_bad_prompt_file_fails_at_startup_and_sends_nothing(
    llm: FakeOpenAI, tmp_path: Path, source: str, why: str
) -> None:
    (tmp_path / "prompt.txt").write_text(source)
    with pytest.raises(ConfigError, match=why) as raised:
        OpenAISummariser(settings_for(llm, tmp_path, prompt_file="prompt.txt"))
    assert "prompt_file" in str(raised.value)
    assert llm.requests == []


def test_nudge_run_does_not_start_with_a_bad_prompt_file(
    tmp_path: Path, slack: FakeSlack, clock: Clock, llm: FakeOpenAI
) -> None:
    (tmp_path / "prompt.txt").write_text("{{ ''.__class__ }}")
    settings = {
        "openai_api_key": "sk-test-key",
        "openai_base_url": llm.url,
        "summary": {"prompt_file": str(tmp_path / "prompt.txt")},
    }
    with pytest.raises(ConfigError, match="unsafe"):
        SlackApp(tmp_path, slack, clock, settings=settings)


def test_a_missing_prompt_file_fails_at_startup(llm: FakeOpenAI, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read it"):
        OpenAISummariser(settings_for(llm, tmp_path, prompt_file="nope.txt"))


# --- many at once --------------------------------------------------------------------------


def _echo_name(body: JsonDict) -> str:
    prompt = body["messages"][1]["content"]
    name = next(line for line in prompt.splitlines() if line.startswith("- account_name: "))
    return f"- Notes for {name.removeprefix('- account_name: ')}"


def test_summarise_many_runs_side_by_side_and_keeps_the_order(llm: FakeOpenAI) -> None:
    llm.answer, llm.delay = _echo_name, 0.3
    summariser = OpenAISummariser(settings_for(llm, timeout_s=10))
    summaries = summariser.summarise_many([data(n) for n in range(16)], concurrency=8)
    assert summaries == [f"• Notes for Account {n}" for n in range(16)]
    assert len(llm.requests) == 16


def test_a_used_up_budget_leaves_the_rest_of_the_run_to_the_template(llm: FakeOpenAI) -> None:
    summariser = OpenAISummariser(settings_for(llm))
    assert summariser.summarise_many([data(1), data(2)], budget_s=0) == [template(1), template(2)]
    assert llm.requests == []


# --- end to end ----------------------------------------------------------------------------


def _crossing(tmp_path: Path, slack: FakeSlack, clock: Clock, llm: FakeOpenAI) -> Harness:
    settings = {"openai_api_key": "sk-test-key", "openai_base_url": llm.url}
    h = Harness(tmp_path, slack, clock, settings={**settings, "summary": {"timeout_s": 2}})
    h.after_a_quiet_first_poll([account(1, 41, 50, owner=1, name="Acme <EMEA>")])
    return h


def test_a_poll_dm_carries_the_llm_summary(
    tmp_path: Path, slack: FakeSlack, clock: Clock, llm: FakeOpenAI
) -> None:
    h = _crossing(tmp_path, slack, clock, llm)
    report = h.poll()
    assert [a.sent for a in report.alerts] == [True]
    [post] = h.posts()
    assert LLM_LINE in json.dumps(post["blocks"], ensure_ascii=False)
    [request] = llm.requests
    assert "- account_name: Acme <EMEA>" in request.user_prompt


def test_with_the_llm_failing_the_dm_carries_the_template_summary(
    tmp_path: Path, slack: FakeSlack, clock: Clock, llm: FakeOpenAI
) -> None:
    h = _crossing(tmp_path, slack, clock, llm)
    llm.fail(500, times=3)
    report = h.poll()
    assert [a.sent for a in report.alerts] == [True]
    [post] = h.posts()
    blocks = json.dumps(post["blocks"], ensure_ascii=False)
    assert "Used 41 of 50 h (82 %)" in blocks and LLM_LINE not in blocks
    assert len(llm.requests) == 3


def test_a_dry_run_never_calls_the_llm(
    tmp_path: Path, slack: FakeSlack, clock: Clock, llm: FakeOpenAI
) -> None:
    h = _crossing(tmp_path, slack, clock, llm)
    assert len(h.poll(dry_run=True).alerts) == 1
    assert llm.requests == []


def test_usage_summary_answers_with_the_llm_summary(
    tmp_path: Path, slack: FakeSlack, clock: Clock, llm: FakeOpenAI
) -> None:
    settings = {"openai_api_key": "sk-test-key", "openai_base_url": llm.url}
    with SlackApp(tmp_path, slack, clock, settings=settings) as app:
        app.set_rows([account(1, 41, 50, owner=1, name="Acme Corp")])
        _, reply = run(app, SUMMARY, "account1.example")
    assert LLM_LINE in shown(reply)
    assert len(llm.requests) == 1


def test_default_answer_is_grounded_for_any_account() -> None:
    assert ungrounded(DEFAULT_ANSWER, []) == []


@pytest.mark.parametrize(
    "answer",
    ["I'm sorry, but I can't help with that.", '{"summary": ["Usage at 82%"]}', "Usage is high."],
)
def test_an_answer_that_is_not_a_bullet_list_gets_the_template(
    llm: FakeOpenAI, answer: str
) -> None:
    llm.answer = answer
    assert OpenAISummariser(settings_for(llm)).summarise(data()) == template()
