"""Block Kit builders: pure functions of plain values."""
