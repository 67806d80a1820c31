"""The statements an engine or a connection sends, as SQLAlchemy's cursor events see them
(the driver path, `shared.db`, fires them too)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event


class Statements:
    """Records each statement sent through `target` (an Engine or a Connection) while open:
    its SQL on one line, and whether it went as an executemany."""

    def __init__(self, target: Any) -> None:
        self.seen: list[str] = []
        self.many: list[bool] = []
        self.target = target
        event.listen(target, "before_cursor_execute", self._record)

    def _record(self, _conn: object, _cursor: object, statement: str, _parameters: object, _context: object,
                executemany: bool) -> None:
        self.seen.append(" ".join(statement.split()))
        self.many.append(executemany)

    def __enter__(self) -> Statements:
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.target, "before_cursor_execute", self._record)

    def matching(self, *words: str) -> list[str]:
        return [s for s in self.seen if all(w in s for w in words)]
