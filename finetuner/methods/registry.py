"""The methods by name: :func:`register` declares one, :func:`get` / :func:`names` look them up, and the views
that the other layers read (config validation, ``--method``, the app's radio, status lines)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from ..errors import ConfigError
from .base import Method

AUTO = "auto"
# How "auto" (not a method itself: method_choice.choose_method picks one) is named where the methods are.
AUTO_DISPLAY_NAME, AUTO_LABEL = "automatic", "Automatic"
AUTO_SUMMARY = "picked from the data and the model, printed before training"

_METHODS: Dict[str, Method] = {}
# name → display name, "auto" first; kept up to date by register (status lines, the run history).
METHOD_NAMES: Dict[str, str] = {AUTO: AUTO_DISPLAY_NAME}


def register(method: Method) -> Method:
    """Declare ``method``: from now on ``TrainConfig(method=method.name)``, ``--method`` and the app accept it."""
    if method.name == AUTO or method.name in _METHODS:
        raise ConfigError(f"A training method named {method.name!r} is already registered.")
    _METHODS[method.name] = method
    METHOD_NAMES[method.name] = method.display_name
    return method


def get(name: str) -> Method:
    """The registered method called ``name`` (not "auto": :func:`finetuner.method_choice.choose_method`)."""
    try:
        return _METHODS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"method={name!r} is not supported; choose one of {', '.join(names())}.") from None


def find(name: Any) -> Optional[Method]:
    """The registered method called ``name``, or None ("auto", an unknown name, a record's missing value)."""
    return _METHODS.get(name) if isinstance(name, str) else None


def methods() -> List[Method]:
    """The registered methods in registration order."""
    return list(_METHODS.values())


def names() -> Tuple[str, ...]:
    """Every value ``TrainConfig.method`` accepts: "auto", then the methods in registration order."""
    return (AUTO, *_METHODS)


def ui_choices() -> List[Tuple[str, str]]:
    """(label, name) pairs for the app's method radio, "Automatic" first."""
    return [(AUTO_LABEL, AUTO)] + [(method.label, method.name) for method in _METHODS.values()]


def method_defaults() -> Dict[str, Dict[str, Any]]:
    """Each method's defaults for unset settings: ``{name: {"epochs": …, "batch_size": …}}``."""
    return {method.name: method.defaults for method in _METHODS.values()}
