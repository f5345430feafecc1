"""`Closing`: how every vmrpc object that owns a VM is used in a ``with`` block.

`VM`, `LinuxVM` and `PythonPool` each own host resources (a KVM VM and its threads,
host files, a warm VM) released by their idempotent ``close()``. One base gives them
the same context-manager behaviour: ``with obj:`` returns ``obj`` and closes it when
the block ends, however it ends (an exception is never swallowed). No ``__del__``: a
VM forgotten without ``close()`` is released by the native object's own finalizer,
and closing from a finalizer would run at an unpredictable time on an arbitrary thread.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

__all__ = ["Closing"]


class Closing(ABC):
    """Base of objects whose resources ``close()`` releases (idempotently)."""

    __slots__ = ()

    @abstractmethod
    def close(self) -> None:
        """Release what the object owns; calling it again does nothing."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
