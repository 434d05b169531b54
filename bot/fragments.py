"""Admin-authored SQL fragments (numerator, denominator, segment): parsed and allow-listed."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

# Columns, literals, arithmetic, comparisons and boolean logic: nothing that can read another
# table, call a function, or end the statement.
# Conditions: fine in a segment, wrong in a numerator or denominator.
_CONDITIONS: tuple[type[exp.Expr], ...] = (
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.Is,
    exp.In,
    exp.Between,
    exp.And,
    exp.Or,
    exp.Not,
    exp.Like,
    exp.ILike,
    exp.Boolean,
)
_ALLOWED: tuple[type[exp.Expr], ...] = (
    exp.Column,
    exp.Identifier,
    exp.Literal,
    exp.Paren,
    exp.Null,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Neg,
    exp.Cast,
    exp.DataType,
    exp.Tuple,
    *_CONDITIONS,
)

_SQLGLOT_DIALECTS = {
    "postgresql": "postgres",
    "sqlite": "sqlite",
    "duckdb": "duckdb",
    "snowflake": "snowflake",
}


def sqlglot_dialect(sqlalchemy_dialect: str) -> str:
    """sqlglot's name for a SQLAlchemy dialect."""
    return _SQLGLOT_DIALECTS.get(sqlalchemy_dialect, sqlalchemy_dialect)


UNKNOWN = "no such column"


class TableColumns:
    """The table's column names as reflected, found by the name a setting gives (any case).

    Warehouses fold unquoted names differently (Snowflake to upper case, PostgreSQL to lower),
    so a setting is matched against the reflected names ignoring case (an exact match wins),
    and the query names the real column, quoted by the dialect's own rules (`quote`).
    """

    def __init__(self, names: Iterable[str], quote: Callable[[str], str] = str) -> None:
        self.names = list(names)
        self.quote = quote
        self._folded: dict[str, list[str]] = {}
        for name in self.names:
            self._folded.setdefault(name.lower(), []).append(name)

    def find(self, name: str) -> str | None:
        """The real column `name` refers to, or None (no column, or several differing by case)."""
        if name in self.names:
            return self.names[self.names.index(name)]
        matches = self._folded.get(name.lower(), [])
        return matches[0] if len(matches) == 1 else None

    def problem(self, name: str) -> str:
        """Why `name` is not found: no such column, or several equal but for case."""
        matches = self._folded.get(name.lower(), [])
        if len(matches) > 1:
            return f"matches several columns ({', '.join(matches)}); write it exactly"
        return UNKNOWN

    def listing(self) -> str:
        """Up to 30 of the names, for a message."""
        return ", ".join(sorted(self.names, key=str.lower)[:30])

    def identifier(self, actual: str) -> exp.Identifier:
        """`actual` as sqlglot writes it: quoted exactly when the dialect would quote it."""
        return exp.to_identifier(str(actual), quoted=self.quote(actual) != str(actual))


def _problem(expression: exp.Expr, columns: TableColumns) -> str | None:
    for node in expression.walk():
        if node.comments:
            return "comments are not allowed"
        if isinstance(node, exp.Div | exp.Mod | exp.IntDiv):
            # Integer division differs between warehouses (45 / 60 is 0 on PostgreSQL, 0.75 on
            # DuckDB), so the same table would alert different accounts.
            return (
                "division is not allowed (warehouses disagree on integer division); "
                "scale the other side instead, e.g. numerator = minutes, denominator = hours * 60"
            )
        if not isinstance(node, _ALLOWED):
            return f"{node.key.upper()} is not allowed (only columns, numbers, + - * / and AND/OR)"
        if isinstance(node, exp.Column):
            if node.table:
                return f"{node.sql()} names a table; use the column alone"
            if columns.find(node.name) is None:
                reason = columns.problem(node.name)
                return f"unknown column {node.name!r}" if reason == UNKNOWN else reason
    return None


def _numeric_problem(expression: exp.Expr) -> str | None:
    for node in expression.walk():
        if isinstance(node, _CONDITIONS):
            return "must be a number (columns, numbers, + - *), not a condition"
        if isinstance(node, exp.Literal) and node.is_string:
            return "must be a number, not a string"
    return None


def compile_fragment(
    name: str, text: str, columns: TableColumns, dialect: str, *, numeric: bool = False
) -> str:
    """Validate a fragment against the table's columns; return it rendered for `dialect`,
    every column named as the table spells it.

    Raises ValueError with the reason, naming the setting.
    """
    if ";" in text or "--" in text or "/*" in text:
        raise ValueError(f"[columns/rule] {name}: ';' and comments are not allowed")
    try:
        parsed = sqlglot.parse(text, read=sqlglot_dialect(dialect))
    except ParseError as exc:
        raise ValueError(f"{name}: not a SQL expression ({str(exc).splitlines()[0]})") from exc
    if len(parsed) != 1 or parsed[0] is None:
        raise ValueError(f"{name}: must be exactly one expression")
    problem = _problem(parsed[0], columns)
    if problem is None and numeric:
        problem = _numeric_problem(parsed[0])
    if problem:
        raise ValueError(f"{name} = {text!r}: {problem}")
    for node in list(parsed[0].find_all(exp.Column)):
        actual = columns.find(node.name)
        assert actual is not None  # _problem found every column
        node.set("this", columns.identifier(actual))
    return parsed[0].sql(dialect=sqlglot_dialect(dialect))
