"""Admin-authored SQL fragments (numerator, denominator, segment): parsed and allow-listed."""

from __future__ import annotations

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


def _problem(expression: exp.Expr, columns: set[str]) -> str | None:
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
            if node.name.lower() not in columns:
                return f"unknown column {node.name!r}"
    return None


def _numeric_problem(expression: exp.Expr) -> str | None:
    for node in expression.walk():
        if isinstance(node, _CONDITIONS):
            return "must be a number (columns, numbers, + - *), not a condition"
        if isinstance(node, exp.Literal) and node.is_string:
            return "must be a number, not a string"
    return None


def compile_fragment(
    name: str, text: str, columns: set[str], dialect: str, *, numeric: bool = False
) -> str:
    """Validate a fragment against the table's columns; return it rendered for `dialect`.

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
    problem = _problem(parsed[0], {column.lower() for column in columns})
    if problem is None and numeric:
        problem = _numeric_problem(parsed[0])
    if problem:
        raise ValueError(f"{name} = {text!r}: {problem}")
    return parsed[0].sql(dialect=sqlglot_dialect(dialect))
