"""Typed errors: adapters raise them `from` the library error; the edges translate them once."""


class NudgeError(Exception):
    """Base of every error Nudge raises on purpose."""


class ConfigError(NudgeError):
    """Configuration is missing or invalid; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class WarehouseError(NudgeError):
    """The warehouse could not be queried."""


class OwnerLookupError(NudgeError):
    """An owner could not be resolved to a Slack user (per account, not fatal)."""


class SummaryError(NudgeError):
    """The summary could not be produced by the LLM."""


class DeliveryError(NudgeError):
    """Slack refused or failed a send; `code` is Slack's error string when there is one."""

    def __init__(self, message: str, code: str = "", *, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.fatal = fatal
