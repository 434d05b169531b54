"""The `/usage-threshold` answers: show, set, help and the usage line (all ephemeral)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from blocks import ids
from blocks.alert import MAX_BLOCKS, SECTION_LIMIT, TEXT_LIMIT, Message
from blocks.text import escape_mrkdwn, format_moment, format_threshold, truncate

CMD = ids.THRESHOLD_COMMAND
USAGE = (
    f"Usage: `{CMD}` shows the threshold · `{CMD} set 75` changes it (admins; a percentage "
    f"above 0 and at most 100, up to two decimals: `75`, `75%`, `62.5`) · `{CMD} help`"
)
SOURCES = {
    "stored": f"set with `{CMD} set`",
    "environment": "from the environment (`NUDGE_RULE__THRESHOLD`)",
    "configuration": "from Nudge's configuration (`[rule] threshold` in nudge.toml)",
    "default": "Nudge's default",
}
STATUSES = {"ok": "ran fine", "failed": "failed (see `nudge status`)", "running": "running now"}
ECHO_LIMIT = 80
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


@dataclass(frozen=True)
class Change:
    """One audited change: who, old, new, when."""

    user_id: str
    old: Decimal | None
    new: Decimal
    at: datetime


@dataclass(frozen=True)
class LastPoll:
    """The newest poll run."""

    at: datetime
    status: str
    threshold: Decimal


@dataclass(frozen=True)
class ThresholdView:
    """What `/usage-threshold show` tells; `above` is None when the warehouse did not answer."""

    value: Decimal
    source: str
    last_poll: LastPoll | None
    above: int | None
    evaluated: int | None
    changes: tuple[Change, ...] = ()


def mention(user_id: str) -> str:
    """`<@U…>` for a well-formed Slack user id; anything else is shown as escaped text."""
    return f"<@{user_id}>" if _USER_ID.match(user_id) else escape_mrkdwn(user_id)


def _md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=truncate(text, SECTION_LIMIT), verbatim=True)


def _render(text: str, blocks: list[Block]) -> Message:
    if len(blocks) > MAX_BLOCKS:
        raise ValueError(f"{len(blocks)} blocks: Slack accepts at most {MAX_BLOCKS}")
    return Message(text=truncate(text, TEXT_LIMIT), blocks=[b.to_dict() for b in blocks])


def notice_message(line_mrkdwn: str) -> Message:
    """One short line (a refusal, an error, a confirmation), already safe mrkdwn."""
    return _render(line_mrkdwn, [SectionBlock(text=_md(line_mrkdwn))])


def _source_line(view: ThresholdView) -> str:
    line = f"The threshold is *{format_threshold(view.value)}*, {SOURCES.get(view.source, '')}"
    latest = view.changes[0] if view.changes else None
    if view.source == "stored" and latest is not None:
        line += f" by {mention(latest.user_id)} on {format_moment(latest.at)}"
    line += "."
    poll = view.last_poll
    if poll is not None and poll.threshold != view.value:
        line += (
            " It applies from the next poll"
            f" (the last one used {format_threshold(poll.threshold)})."
        )
    return line


def _poll_field(poll: LastPoll | None) -> str:
    if poll is None:
        return "*Last poll*\nNone yet"
    status = STATUSES.get(poll.status, escape_mrkdwn(poll.status))
    return f"*Last poll*\n{format_moment(poll.at)} — {status}"


def _above_field(view: ThresholdView) -> str:
    if view.above is None:
        return "*Above it now*\nUnknown: the warehouse did not answer"
    total = view.evaluated if view.evaluated is not None else view.above
    of = f" of {view.evaluated:,}" if view.evaluated is not None else ""
    return f"*Above it now*\n{view.above:,}{of} account{'' if total == 1 else 's'}"


def _change_line(change: Change) -> str:
    old = format_threshold(change.old) if change.old is not None else "—"
    return (
        f"• {format_moment(change.at)} — {mention(change.user_id)}: "
        f"{old} → {format_threshold(change.new)}"
    )


def threshold_message(view: ThresholdView) -> Message:
    """`/usage-threshold` (show): the value and its source, last poll, accounts above, changes."""
    history = "\n".join(_change_line(c) for c in view.changes) or "No changes yet."
    blocks: list[Block] = [
        HeaderBlock(text=f"Usage threshold: {format_threshold(view.value)}"),
        SectionBlock(text=_md(_source_line(view))),
        SectionBlock(fields=[_md(_poll_field(view.last_poll)), _md(_above_field(view))]),
        SectionBlock(text=_md(f"*Recent changes*\n{history}")),
        ContextBlock(elements=[_md(f"`{CMD} set 80` (admins) · `{CMD} help`")]),
    ]
    above = "unknown" if view.above is None else f"{view.above:,}"
    text = f"Usage threshold: {format_threshold(view.value)}; accounts above it now: {above}."
    return _render(text, blocks)


def threshold_set_message(old: Decimal, new: Decimal) -> Message:
    """The answer to an accepted `set N`."""
    if new < old:
        effect = "Accounts between the two values get their alert at the next poll."
    else:
        effect = f"Accounts below {format_threshold(new)} get no new alerts from the next poll."
    line = (
        f"Threshold changed from {format_threshold(old)} to *{format_threshold(new)}*. "
        f"It applies from the next poll. {effect}"
    )
    return notice_message(line)


def threshold_unchanged_message(value: Decimal) -> Message:
    """`set N` with the current value: nothing to change."""
    return notice_message(f"The threshold is already *{format_threshold(value)}*: nothing changed.")


def usage_message(text: str) -> Message:
    """Anything the command does not understand: the usage line, the text echoed escaped."""
    shown = truncate(escape_mrkdwn(" ".join(text.split())), ECHO_LIMIT)
    intro = f"I didn't understand “{shown}”. " if shown else ""
    return notice_message(f"{intro}{USAGE}")


def help_message() -> Message:
    """`/usage-threshold help`."""
    lines = [
        f"*`{CMD}`* — the threshold and where it comes from, the last poll, how many accounts "
        "are above it now and the recent changes.",
        f"*`{CMD} set N`* — admins only. `N` is a percentage above 0 and at most 100 with up "
        "to two decimals (`75`, `75%`, `62.5`). Every change is recorded (who, old, new, when) "
        "and applies from the next poll.",
        f"*`{CMD} help`* — this message.",
        "The first of these wins: a value set here › `NUDGE_RULE__THRESHOLD` › `[rule] "
        "threshold` in nudge.toml › 75 %.",
    ]
    blocks: list[Block] = [SectionBlock(text=_md("\n".join(lines)))]
    return _render(f"{CMD} help: show, set N (admins), help.", blocks)
