"""Settings: env + .env + nudge.toml, names as in SPEC 1.3, one clear line per problem."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from bot.config import load_settings, parse_duration, parse_threshold
from bot.errors import ConfigError


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf" / "nudge.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_precedence_environment_over_toml_over_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_toml(
        tmp_path,
        '[rule]\nthreshold = 70\nsegment = "plan = \'starter\'"\n[columns]\nfields = ["plan"]\n',
    )
    assert load_settings(path).rule.threshold == Decimal(70)
    monkeypatch.setenv("NUDGE_RULE__THRESHOLD", "80")
    monkeypatch.setenv("NUDGE_COLUMNS__FIELDS", '["plan", "users"]')
    settings = load_settings(path)
    assert settings.rule.threshold == Decimal(80)
    assert settings.rule.segment == "plan = 'starter'"  # the rest of the section is kept
    assert settings.columns.fields == ["plan", "users"]
    monkeypatch.delenv("NUDGE_RULE__THRESHOLD")
    assert load_settings(write_toml(tmp_path, "")).rule.threshold == Decimal(75)


def test_nudge_config_env_and_relative_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_toml(
        tmp_path, '[warehouse]\nurl = "sqlite:///usage.db"\n[territory]\ncsv = "t.csv"\n'
    )
    monkeypatch.setenv("NUDGE_CONFIG", str(path))
    settings = load_settings()
    assert settings.effective_warehouse_url == f"sqlite:///{path.parent.resolve()}/usage.db"
    assert settings.resolve_path(settings.territory.csv) == path.parent.resolve() / "t.csv"
    assert settings.state_database_url().endswith("/conf/nudge-state.db")
    monkeypatch.setenv("NUDGE_WAREHOUSE_URL", "duckdb:///x.duckdb")
    assert load_settings().effective_warehouse_url == "duckdb:///x.duckdb"


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SLACK_BOT_TOKEN=xoxb-from-dotenv\nNUDGE_ADMINS=U1, U2\n")
    settings = load_settings()
    assert settings.slack_bot_token is not None
    assert settings.slack_bot_token.get_secret_value() == "xoxb-from-dotenv"
    assert "xoxb-from-dotenv" not in repr(settings)
    assert settings.admin_ids == {"U1", "U2"}


def test_every_invalid_value_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_toml(
        tmp_path, '[schedule]\nevery = "soon"\n[summary]\ntimeout_s = ""\n[rule]\nthresold = 3\n'
    )
    monkeypatch.setenv("NUDGE_RULE__THRESHOLD", "0")
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    problems = raised.value.problems
    assert len(problems) == 4
    assert any(p.startswith("schedule.every:") for p in problems)
    assert any("empty never means no timeout" in p for p in problems)
    assert any(p.startswith("rule.threshold:") and "NUDGE_RULE__THRESHOLD" in p for p in problems)
    assert any("thresold" in p for p in problems)  # a typo is not silently ignored


def test_require_names_what_each_command_lacks() -> None:
    settings = load_settings()
    with pytest.raises(ConfigError) as raised:
        settings.require("poll")
    assert len(raised.value.problems) == 2
    settings.require("demo")
    with pytest.raises(ConfigError) as dry:
        settings.require("poll", dry_run=True)
    assert len(dry.value.problems) == 1 and "warehouse" in dry.value.problems[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("75", "75"), ("75%", "75"), ("75 %", "75"), ("62.5", "62.5"), ("100", "100"), ("075", "75")],
)
def test_threshold_accepted_forms(text: str, expected: str) -> None:
    assert parse_threshold(text) == Decimal(expected)


@pytest.mark.parametrize(
    "text",
    ["abc", "0", "101", "-5", "+75", "62,5", "62.555", "75 80", "1e2", "75%%", "NaN", "inf", ""],
)
def test_threshold_refused_forms(text: str) -> None:
    with pytest.raises(ValueError):
        parse_threshold(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("26h", timedelta(hours=26)),
        ("2d", timedelta(days=2)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "0m", "15", "forever", "-5m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_the_documented_example_file_is_valid() -> None:
    example = Path(__file__).resolve().parents[1] / "nudge.toml.example"
    settings = load_settings(example)
    assert settings.rule.threshold == Decimal(75) and settings.schedule.every == timedelta(
        minutes=15
    )
