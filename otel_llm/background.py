"""``Background``: what the package starts and stops -- services, servers, worker threads.

``start()`` returns the started object and ``stop()`` is safe to call twice, so every one of
them is used the same way, by hand or in a ``with`` block.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Background:
    """Something started and stopped; ``with`` starts it and stops it however the block ends."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> object:
        """Stop; a second call does nothing. What it returns (if anything) ``with`` ignores."""
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
