"""fastanon: anonymize DICOM files at the speed of copying their bytes."""

import sys
import types

from .errors import FastanonError, MalformedError, MaskWarning, PolicyError

__version__ = "0.1.0"

__all__ = ["Action", "FastanonError", "Finding", "MalformedError", "Mask", "MaskRules",
           "MaskWarning", "Policy", "PolicyError", "Report", "anonymize", "anonymize_file",
           "inspect", "summarize", "__version__"]

# The API is imported on first use (PEP 562), so that `import fastanon.cli` and the commands
# that need little (--help, presets) do not load the engine.
_HOMES = {"Finding": "inspect", "inspect": "inspect", "summarize": "inspect", "Mask": "masks",
          "MaskRules": "masks", "Report": "pipeline", "anonymize": "pipeline",
          "anonymize_file": "pipeline", "Action": "plan", "Policy": "policy"}


def __getattr__(name: str):
    import importlib

    home = _HOMES.get(name)
    if home is None:        # a submodule: fastanon.pipeline, fastanon.uids, ...
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """`fastanon.inspect` stays the function: loading the module of the same name would bind
    the module here (the import system sets a package's attribute for each submodule)."""

    def __setattr__(self, name: str, value) -> None:
        if name == "inspect" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
