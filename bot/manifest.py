"""`nudge manifest`: manifest.yml, or its HTTP-mode variant with request URLs filled in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bot.errors import ConfigError

MANIFEST = Path(__file__).resolve().parents[1] / "manifest.yml"


def load_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    """The manifest as data."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"cannot read {path}: {exc.strerror}"]) from exc
    if not isinstance(data, dict):
        raise ConfigError([f"{path} is not a Slack app manifest"])
    return data


def http_variant(manifest: dict[str, Any], base_url: str) -> dict[str, Any]:
    """Socket Mode off; every request URL points at `<base_url>/slack/events`."""
    if not base_url.startswith("https://"):
        raise ConfigError(["--url must be the public https:// address of `nudge run`"])
    url = base_url.rstrip("/") + "/slack/events"
    features = dict(manifest["features"])
    features["slash_commands"] = [{**c, "url": url} for c in features["slash_commands"]]
    settings = dict(manifest["settings"])
    settings["event_subscriptions"] = {**settings["event_subscriptions"], "request_url": url}
    settings["interactivity"] = {**settings["interactivity"], "request_url": url}
    settings["socket_mode_enabled"] = False
    return {**manifest, "features": features, "settings": settings}


def bot_scopes(manifest: dict[str, Any]) -> set[str]:
    """The bot scopes the manifest asks for."""
    return set(manifest["oauth_config"]["scopes"]["bot"])


def render(manifest: dict[str, Any]) -> str:
    """YAML as Slack's manifest editor accepts it."""
    return str(yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True, width=100))
