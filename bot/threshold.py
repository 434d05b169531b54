"""The threshold in force and where it comes from (SPEC 1.3 precedence)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from bot.config import Settings
from bot.store import Store

ThresholdSource = Literal["stored", "environment", "configuration", "default"]
THRESHOLD_ENV = "NUDGE_RULE__THRESHOLD"


@dataclass(frozen=True)
class ThresholdSetting:
    """The threshold the next poll uses, and where it comes from (SPEC 1.3 precedence)."""

    value: Decimal
    source: ThresholdSource


def current_threshold(settings: Settings, store: Store) -> ThresholdSetting:
    """Stored by `/usage-threshold set` > the environment > nudge.toml > 75 (as the poller)."""
    stored = store.stored_threshold()
    if stored is not None:
        return ThresholdSetting(stored, "stored")
    value = settings.rule.threshold
    if "threshold" not in settings.rule.model_fields_set:
        return ThresholdSetting(value, "default")
    if any(name.upper() == THRESHOLD_ENV for name in os.environ):
        return ThresholdSetting(value, "environment")
    return ThresholdSetting(value, "configuration")
