"""Action ids, block ids and command names shared by the builders and the listeners."""

CARD_VERSION = "v1"

SNOOZE = "nudge_snooze"
CONTACTED = "nudge_contacted"
OPEN_SALESFORCE = "nudge_open_salesforce"
ASSIGN = "nudge_assign"

THRESHOLD_COMMAND = "/usage-threshold"
SUMMARY_COMMAND = "/usage-summary"

SNOOZE_CHOICES: tuple[tuple[str, int], ...] = (
    ("1 day", 1),
    ("3 days", 3),
    ("1 week", 7),
    ("2 weeks", 14),
)

METADATA_EVENT = "nudge_alert"


def actions_block_id(alert_id: str) -> str:
    """Block id of a card's actions: the card version and the alert it acts on."""
    return f"alert:{CARD_VERSION}:{alert_id}"


def parse_actions_block_id(block_id: str) -> tuple[str, str] | None:
    """(version, alert_id) from an actions block id, or None when it is not one of ours."""
    parts = block_id.split(":")
    if len(parts) != 3 or parts[0] != "alert":
        return None
    return parts[1], parts[2]
