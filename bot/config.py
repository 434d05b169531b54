"""Settings: environment + `.env` + `nudge.toml`, typed and validated at start (SPEC 1.3)."""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from bot.errors import ConfigError

DEFAULT_THRESHOLD = Decimal(75)
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_THRESHOLD = re.compile(r"^\s*\d+(\.\d+)?\s*%?\s*$", re.ASCII)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(value: object) -> timedelta:
    """Parse "90s", "15m", "26h", "2d" or seconds; empty is an error, never "unlimited"."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{value!r} is not a duration like 90s, 15m, 26h or 2d")
    try:
        return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    except OverflowError as exc:
        raise ValueError(f"{value!r} is too long a duration") from exc


def parse_threshold(value: object) -> Decimal:
    """A percentage in (0, 100]: digits with up to two decimals, optionally followed by `%`."""
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, str) and _THRESHOLD.match(value):
        text = value.strip().rstrip("%").strip()
    else:
        raise ValueError(f"{value!r} is not a percentage like 75, 75% or 62.5")
    try:
        number = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"{value!r} is not a number") from exc
    if not number.is_finite() or not 0 < number <= 100:
        raise ValueError(f"{value!r} must be above 0 and at most 100")
    if number != number.quantize(Decimal("0.01")):
        raise ValueError(f"{value!r} has more than two decimals")
    return number


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Percent = Annotated[Decimal, BeforeValidator(parse_threshold)]


class _Section(BaseModel):
    model_config = {"extra": "forbid"}


class WarehouseSection(_Section):
    url: str = ""
    table: str = "account_usage"
    timeout: Duration = timedelta(seconds=60)


class ColumnsSection(_Section):
    account_id: str = "account_id"
    account_name: str = "account_name"
    domain: str = "domain"
    owner_id: str = ""
    numerator: str = Field(default="tracked_hours", min_length=1)
    denominator: str = Field(default="total_free_hours", min_length=1)
    fields: list[str] = Field(default_factory=list)
    updated_at: str = ""
    unit: str = "h"


class RuleSection(_Section):
    threshold: Percent = DEFAULT_THRESHOLD
    segment: str = ""
    rearm_below: Percent | None = None
    quota_label: str = "free hours quota"
    pitch: str = "a good time to check in and discuss an Enterprise plan"


class ScheduleSection(_Section):
    every: Duration = timedelta(minutes=15)
    cron: str = ""
    timezone: str = "UTC"
    budget: Annotated[Duration, Field(ge=timedelta(minutes=1))] = timedelta(minutes=5)


class TerritorySection(_Section):
    csv: str = ""
    fallback_channel: str = ""
    cache_ttl: Duration = timedelta(hours=24)


class SalesforceSection(_Section):
    instance_url: str = ""
    api_version: str = "62.0"
    timeout_s: float = Field(default=20, gt=0, le=120)
    account_fields: list[str] = Field(
        default_factory=lambda: [
            "Name",
            "Parent.Name",
            "Description",
            "Industry",
            "BillingCountry",
            "Website",
            "NumberOfEmployees",
            "AnnualRevenue",
        ]
    )


class DeliverySection(_Section):
    admin_channel: str = ""
    working_hours: str = ""
    max_attempts: int = Field(default=5, ge=1)


class SummarySection(_Section):
    enabled: bool = True
    model: str = "gpt-4o-mini"
    prompt_file: str = ""
    send_fields: list[str] = Field(default_factory=list)
    timeout_s: float = Field(default=20, gt=0, le=120)

    @field_validator("timeout_s", mode="before")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        if value in ("", None):
            raise ValueError("must be a number of seconds; empty never means no timeout")
        return value


SECTIONS: dict[str, type[BaseModel]] = {
    "warehouse": WarehouseSection,
    "columns": ColumnsSection,
    "rule": RuleSection,
    "schedule": ScheduleSection,
    "territory": TerritorySection,
    "salesforce": SalesforceSection,
    "delivery": DeliverySection,
    "summary": SummarySection,
}


def _secret(*names: str) -> Any:
    return Field(default=None, validation_alias=AliasChoices(*names))


class Settings(BaseSettings):
    """Everything Nudge reads from its environment and `nudge.toml`."""

    model_config = SettingsConfigDict(
        env_prefix="NUDGE_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
    )

    warehouse: WarehouseSection = Field(default_factory=WarehouseSection)
    columns: ColumnsSection = Field(default_factory=ColumnsSection)
    rule: RuleSection = Field(default_factory=RuleSection)
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    territory: TerritorySection = Field(default_factory=TerritorySection)
    salesforce: SalesforceSection = Field(default_factory=SalesforceSection)
    delivery: DeliverySection = Field(default_factory=DeliverySection)
    summary: SummarySection = Field(default_factory=SummarySection)

    warehouse_url: str = ""
    state_url: str = ""
    admins: str = ""
    viewers: str = ""
    config_dir: str = ""

    slack_bot_token: SecretStr | None = _secret("SLACK_BOT_TOKEN", "slack_bot_token")
    slack_signing_secret: SecretStr | None = _secret("SLACK_SIGNING_SECRET", "slack_signing_secret")
    slack_app_token: SecretStr | None = _secret("SLACK_APP_TOKEN", "slack_app_token")
    slack_api_url: str = Field(
        default="https://slack.com/api/",
        validation_alias=AliasChoices("SLACK_API_URL", "slack_api_url"),
    )
    salesforce_domain: str = Field(
        default="", validation_alias=AliasChoices("SALESFORCE_DOMAIN", "salesforce_domain")
    )
    salesforce_consumer_key: str = Field(
        default="",
        validation_alias=AliasChoices("SALESFORCE_CONSUMER_KEY", "salesforce_consumer_key"),
    )
    salesforce_consumer_secret: SecretStr | None = _secret(
        "SALESFORCE_CONSUMER_SECRET", "salesforce_consumer_secret"
    )
    salesforce_username: str = Field(
        default="", validation_alias=AliasChoices("SALESFORCE_USERNAME", "salesforce_username")
    )
    salesforce_private_key_file: str = Field(
        default="",
        validation_alias=AliasChoices("SALESFORCE_PRIVATE_KEY_FILE", "salesforce_private_key_file"),
    )
    salesforce_instance_url: str = Field(
        default="",
        validation_alias=AliasChoices("SALESFORCE_INSTANCE_URL", "salesforce_instance_url"),
    )
    salesforce_access_token: SecretStr | None = _secret(
        "SALESFORCE_ACCESS_TOKEN", "salesforce_access_token"
    )
    salesforce_password: SecretStr | None = _secret("SALESFORCE_PASSWORD", "salesforce_password")
    salesforce_security_token: SecretStr | None = _secret(
        "SALESFORCE_SECURITY_TOKEN", "salesforce_security_token"
    )
    openai_api_key: SecretStr | None = _secret("OPENAI_API_KEY", "openai_api_key")
    openai_base_url: str = Field(
        default="", validation_alias=AliasChoices("OPENAI_BASE_URL", "openai_base_url")
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init kwargs, so it must rank below the environment.
        return env_settings, dotenv_settings, init_settings

    @property
    def effective_warehouse_url(self) -> str:
        """NUDGE_WAREHOUSE_URL wins over `[warehouse] url`."""
        return self.warehouse_url or self.warehouse.url

    @property
    def admin_ids(self) -> frozenset[str]:
        """Slack user ids from NUDGE_ADMINS."""
        return frozenset(part.strip() for part in self.admins.split(",") if part.strip())

    def resolve_path(self, value: str) -> Path:
        """A path from nudge.toml is relative to that file's folder."""
        path = Path(value).expanduser()
        if path.is_absolute() or not self.config_dir:
            return path
        return Path(self.config_dir) / path

    def state_database_url(self) -> str:
        """NUDGE_STATE_URL, or a SQLite file beside nudge.toml (else in the working folder)."""
        return self.state_url or f"sqlite:///{self.resolve_path('nudge-state.db')}"

    def require(self, command: str, *, dry_run: bool = False) -> None:
        """Fail fast with one line per setting that `command` needs and lacks."""
        problems: list[str] = []
        if command in ("poll", "run", "check") and not self.effective_warehouse_url:
            where = "" if self.config_dir else " (no ./nudge.toml here and NUDGE_CONFIG is not set)"
            problems.append(
                "warehouse: set NUDGE_WAREHOUSE_URL or [warehouse] url in nudge.toml "
                f"(a SQLAlchemy URL such as sqlite:///usage.db or snowflake://…){where}"
            )
        if command in ("poll", "run") and not dry_run and not self.slack_bot_token:
            problems.append(
                "SLACK_BOT_TOKEN is not set (the bot token, xoxb-…, from OAuth & Permissions)"
            )
        app_token = self.slack_app_token.get_secret_value() if self.slack_app_token else ""
        if command == "run" and app_token and not app_token.startswith("xapp-"):
            problems.append(
                "SLACK_APP_TOKEN is not an app-level token (xapp-…): create one with "
                "connections:write under Basic Information → App-Level Tokens"
            )
        if command == "run" and not (self.slack_signing_secret or self.slack_app_token):
            problems.append("set SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode)")
        if problems:
            raise ConfigError(problems)


def _sqlite_relative(url: str, folder: Path) -> str:
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        return prefix + str(folder / url[len(prefix) :])
    return url


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"cannot read {path}: {exc.strerror}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path} is not valid TOML: {exc}"]) from exc
    warehouse = data.get("warehouse")
    if isinstance(warehouse, dict) and isinstance(warehouse.get("url"), str):
        warehouse["url"] = _sqlite_relative(warehouse["url"], path.parent)
    data["config_dir"] = str(path.parent.resolve())
    return data


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The valid keys next to an unknown one, for a "did you mean" hint."""
    if len(loc) == 1:
        return list(SECTIONS)
    model = SECTIONS.get(str(loc[0]))
    return list(model.model_fields) if model else []


def _explain(error: ValidationError, source: str) -> list[str]:
    lines = []
    for item in error.errors():
        loc = tuple(item["loc"])
        where = ".".join(str(part) for part in loc)
        env = "NUDGE_" + "__".join(str(part).upper() for part in loc)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), _known_keys(loc), n=1)
            message = "unknown setting" + (f"; did you mean {close[0]!r}?" if close else "")
        lines.append(f"{where}: {message} (set in {source} or {env})")
    return lines


def _check_sections(data: dict[str, Any], path: Path) -> None:
    unknown = [
        key for key, value in data.items() if isinstance(value, dict) and key not in SECTIONS
    ]
    problems = []
    for key in unknown:
        close = difflib.get_close_matches(key, list(SECTIONS), n=1)
        hint = f"; did you mean [{close[0]}]?" if close else ""
        problems.append(f"{path}: unknown section [{key}]{hint}")
    if problems:
        raise ConfigError(problems)


def load_settings(config_path: str | os.PathLike[str] | None = None) -> Settings:
    """Load and validate settings; raise ConfigError with one line per problem."""
    path_text = config_path or os.environ.get("NUDGE_CONFIG", "")
    path = Path(path_text) if path_text else Path("nudge.toml")
    data: dict[str, Any] = {}
    if path_text or path.is_file():
        data = _read_toml(path)
        _check_sections(data, path)
    # A .env beside nudge.toml is read too (the working folder's one wins).
    env_files = [path.resolve().parent / ".env", Path(".env")]
    source = str(path) if data else "nudge.toml"
    try:
        return Settings(**data, _env_file=tuple(env_files))  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError(_explain(exc, source)) from exc
    except SettingsError as exc:
        cause = exc.__cause__ or exc
        raise ConfigError(
            [f"{exc}: {cause} (lists and tables in the environment are JSON, e.g. '[\"plan\"]')"]
        ) from exc
