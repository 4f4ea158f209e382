"""Turn SIGINT and SIGTERM into a request to save and stop after the current step."""

from __future__ import annotations

import contextlib
import signal
from types import FrameType

__all__ = ["StopRequest"]


class StopRequest:
    """Context manager: while active, the first SIGINT/SIGTERM sets :attr:`signum`.

    A second SIGINT raises ``KeyboardInterrupt`` at once, for a user who does not
    want to wait for the step to finish and the checkpoint to be written.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            # outside the main thread signals stay with the caller
            with contextlib.suppress(ValueError):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        """Shell convention: 128 + signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + (self.signum or 0)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""
