"""stackc: compile one stack spec into LLM inference deployments.

The public API is small: ``hookimpl`` for plugins and ``compile_stack`` for programs. Heavy
modules load on first use so ``import stackc`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stackc.hookspecs import hookimpl

if TYPE_CHECKING:
    from stackc.api import compile_stack

__version__ = "0.1.0"
__all__ = ["__version__", "compile_stack", "hookimpl"]


def __getattr__(name: str) -> Any:
    if name == "compile_stack":
        from stackc.api import compile_stack

        return compile_stack
    raise AttributeError(name)
