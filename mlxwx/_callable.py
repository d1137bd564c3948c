"""Stage packages that can be called: `mlxwx.align(...)` and `mlxwx.diarize(...)` run their stage
function, while `mlxwx.align.AlignOptions`, `import mlxwx.diarize.pyannote` and the rest keep
working (a package attribute named like the function would hide the package)."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any


def make_callable(module_name: str, function: Callable[..., Any]) -> None:
    """Calling module `module_name` calls `function`."""

    class CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return function(*args, **kwargs)

    CallableModule.__call__.__doc__ = function.__doc__
    sys.modules[module_name].__class__ = CallableModule
