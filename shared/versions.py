"""Installed versions of the libraries a result depends on: recorded in every adapter and every bench report."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Iterable

#: What a trained or served model depends on.
MODEL_LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes")


def library_versions(packages: Iterable[str] = MODEL_LIBRARIES) -> dict[str, str]:
    """``{package: version}`` of the installed ones, in the order given."""
    out = {}
    for package in packages:
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out
