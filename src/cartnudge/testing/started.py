"""A service a test starts and stops (a database, a mail server, an API's stand-in), also
usable as a context manager."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Started:
    """``with Service() as service:`` starts it, and stops it however the block ends."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
