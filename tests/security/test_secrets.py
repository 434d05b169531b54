"""Secrets never appear in logs, output, Slack messages, LLM prompts or the state database
(the Salesforce secrets' redaction is tested in tests/test_salesforce.py)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.deployment import nudge
from tests.fakes.openai import FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.warehouses import account, create_usage_table, sf_id

BOT = "xoxb-SECRET-BOT-7f3a9c"
SIGNING = "SECRET-SIGNING-51d0e2"
OPENAI = "sk-SECRET-OPENAI-a81b44"


def test_secrets_stay_out_of_every_output(tmp_path: Path) -> None:
    create_usage_table(
        f"sqlite:///{tmp_path / 'usage.db'}",
        [account(1, 45, 50, owner=1), account(2, 48, 50, owner=1)],
    )
    (tmp_path / "territory.csv").write_text(
        f"crm_user_id,email,slack_user_id\n{sf_id('005', 1)},dana@example.com,\n"
    )
    (tmp_path / "nudge.toml").write_text(
        '[warehouse]\nurl = "sqlite:///usage.db"\n[columns]\nowner_id = "owner_id"\n'
        '[territory]\ncsv = "territory.csv"\n'
    )
    with FakeSlack(token=BOT) as slack, FakeOpenAI() as llm:
        slack.add_user("U0DANA", "dana@example.com", first_name="Dana")
        env = {
            "SLACK_BOT_TOKEN": BOT,
            "SLACK_SIGNING_SECRET": SIGNING,
            "SLACK_API_URL": slack.url,
            "OPENAI_API_KEY": OPENAI,
            "OPENAI_BASE_URL": llm.url,
            "NUDGE_CONFIG": str(tmp_path / "nudge.toml"),
        }
        runs = [
            nudge("-v", "poll", "--json", env=env, cwd=tmp_path),
            nudge("-v", "poll", env=env, cwd=tmp_path),
            nudge("status", env=env, cwd=tmp_path),
            nudge("check", env=env, cwd=tmp_path),
        ]
        sent_to_slack = json.dumps([c.params for c in slack.calls])
        sent_to_llm = json.dumps([r.body for r in llm.requests])
    assert runs[0].returncode == 0 and slack.all_posts() and sent_to_llm != "[]"  # all were used
    outputs = "".join(r.stdout + r.stderr for r in runs)
    state = (tmp_path / "nudge-state.db").read_bytes().decode("latin-1")
    for secret in (BOT, SIGNING, OPENAI):  # Salesforce's: tests/test_salesforce.py
        for where, text in (
            ("output", outputs),
            ("Slack", sent_to_slack),
            ("LLM", sent_to_llm),
            ("state database", state),
        ):
            assert secret not in text, f"{secret} leaked into the {where}"
