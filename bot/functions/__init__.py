"""Internal function handlers and the registry that resolves the model's calls to them."""

from bot.functions.clock import get_current_time
from bot.functions.registry import FunctionContext, FunctionRegistry

__all__ = ["FunctionContext", "FunctionRegistry", "builtin_functions"]


def builtin_functions(*, timeout: float = 10.0) -> FunctionRegistry:
    """A registry holding every built-in handler."""
    registry = FunctionRegistry(timeout=timeout)
    registry.register(get_current_time)
    return registry
