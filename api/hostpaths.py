"""Host paths in plugin configs given over the REST API, kept in the files root.

A plugin marks every config field that names a path on the bot's host with
:class:`callbot.bot.plugin.HostPath` (``read`` or ``write``). Over the REST
API a key holder must not name any file the control plane's host may read or
write, so every marked value (a given one, or the field's default) is taken
relative to the files root and rewritten to the absolute path it resolves to
there, before the bot gets its config; the bot, which may run on another host
sharing the volume, then reads or writes exactly that path. Refused: an
absolute path, and one resolving outside the root (``..`` or a symlink).
A ``read`` path must exist. Nothing is made here (a refused request leaves
no trace): plugins make the directories their ``write`` paths need when they
start. ``callbot run`` does not come here: there any path is taken.

Known limit: the check is made when the request arrives; someone who can
write in the files root (a shared volume) can swap a directory for a symlink
before the bot writes. Union-of-model fields, ``mode="before"`` model
validators and defaults inside nested models are not walked (docs/plugins.md).
"""

from __future__ import annotations

import contextvars
import logging
import types
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from callbot.bot.config import PluginSpec
from callbot.bot.plugin import (
    HostPath,
    HostPathAccess,
    Plugin,
    PluginError,
    load_plugin_class,
    validate_spec,
)

logger = logging.getLogger(__name__)

_SHOWN = 40
"""Characters of a refused path quoted in the message."""

_SEQUENCES: tuple[Any, ...] = (list, tuple, set, frozenset, Sequence)
_MAPPINGS: tuple[Any, ...] = (dict, Mapping)


class HostPathError(PluginError):
    """A plugin config names a host path outside the files root."""


# The files root of the app serving the current request (FilesRootMiddleware).
current_root: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "callbot_files_root", default=None
)


class FilesRootMiddleware:
    """Hands the app's files root to the request body's validation.

    Pure ASGI: the body is validated inside the request's context, where
    :func:`files_root` finds it.
    """

    def __init__(self, app: ASGIApp, root: Path) -> None:
        self.app = app
        self.root = root

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = current_root.set(self.root)
        try:
            await self.app(scope, receive, send)
        finally:
            current_root.reset(token)


def files_root() -> Path:
    """The files root of the app serving this request, else the environment's."""
    root = current_root.get()
    if root is not None:
        return root
    from api.settings import ControlPlaneSettings

    return ControlPlaneSettings().resolved_files_dir()


def confine_specs(
    specs: Sequence[PluginSpec],
    root: Path,
    registry: Mapping[str, type[Plugin]] | None = None,
) -> list[PluginSpec]:
    """The specs with every marked path rewritten into ``root``, validated.

    Raises PluginError for an unknown plugin or a config its model refuses,
    and HostPathError for a path that is absolute, outside ``root``, or
    (``read``) missing there.
    """
    confined = []
    for spec in specs:
        cls = load_plugin_class(spec.name, registry)
        paths = _Paths(spec.name, root)
        config = paths.model(cls.config_model, spec.config, "")
        confined.append(spec.model_copy(update={"config": config}))
        validate_spec(confined[-1], registry)
    return confined


def confine(value: str, root: Path, access: HostPathAccess) -> Path:
    """``value`` as an absolute path inside ``root``; ValueError with the reason.

    The reason reads after the value, as in ``f"{value!r} {reason}"``.
    """
    base = root.resolve()
    relative = Path(value)
    if relative.is_absolute():
        raise ValueError(f"must be relative to the files root {base}")
    try:
        target = (base / relative).resolve()
    except (OSError, RuntimeError, ValueError):
        raise ValueError(f"cannot be resolved in the files root {base}") from None
    if not target.is_relative_to(base):
        raise ValueError(f"is outside the files root {base}")
    if access == "read":
        try:
            found = target.exists()
        except OSError:
            found = False
        if not found:
            raise ValueError(f"does not exist in the files root {base}")
    return target


class _Paths:
    """Walks one plugin's raw config along its model, confining marked values."""

    def __init__(self, plugin: str, root: Path) -> None:
        self.plugin = plugin
        self.root = root

    def model(self, model: type[BaseModel], raw: Any, where: str) -> Any:
        if not isinstance(raw, dict):
            return raw
        out = dict(raw)
        for name, info in model.model_fields.items():
            key = info.alias if info.alias is not None and info.alias in raw else name
            here = f"{where}.{key}" if where else key
            access = _mark(info.metadata)
            if key in raw:
                out[key] = self.value(info.annotation, raw[key], access, here)
                continue
            # An unset path takes the field's default, also inside the root.
            access = access or _direct_mark(info.annotation)
            if access is None or info.is_required():
                continue
            default = info.get_default(call_default_factory=True)
            if isinstance(default, str | PurePath):
                out[key] = self.path(str(default), access, here)
        return out

    def value(
        self, tp: Any, value: Any, access: HostPathAccess | None, where: str
    ) -> Any:
        origin = get_origin(tp)
        if origin is Annotated:
            inner, *metadata = get_args(tp)
            return self.value(inner, value, _mark(metadata) or access, where)
        if origin is Union or origin is types.UnionType:
            for arg in get_args(tp):
                if _fits(arg, value):
                    return self.value(arg, value, access, where)
            return value
        if access is not None and isinstance(value, str):
            return self.path(value, access, where)
        args = get_args(tp)
        if origin in _SEQUENCES and isinstance(value, list):
            item = args[0] if args else Any
            return [
                self.value(item, v, access, f"{where}.{i}") for i, v in enumerate(value)
            ]
        if origin in _MAPPINGS and isinstance(value, dict):
            item = args[1] if len(args) == 2 else Any
            return {
                k: self.value(item, v, access, f"{where}.{k}") for k, v in value.items()
            }
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return self.model(tp, value, where)
        return value

    def path(self, value: str, access: HostPathAccess, where: str) -> str:
        try:
            target = confine(value, self.root, access)
        except ValueError as exc:
            shown = value if len(value) <= _SHOWN else value[:_SHOWN] + "..."
            raise HostPathError(
                f"plugin {self.plugin!r}: {where} {shown!r} {exc}"
            ) from None
        return str(target)


def _mark(metadata: Sequence[Any]) -> HostPathAccess | None:
    for item in metadata:
        if isinstance(item, HostPath):
            return item.access
    return None


def _direct_mark(tp: Any) -> HostPathAccess | None:
    """The mark of a path type, also inside ``X | None``; None for containers."""
    origin = get_origin(tp)
    if origin is Annotated:
        inner, *metadata = get_args(tp)
        return _mark(metadata) or _direct_mark(inner)
    if origin is Union or origin is types.UnionType:
        for arg in get_args(tp):
            found = _direct_mark(arg)
            if found is not None:
                return found
    return None


def _fits(tp: Any, value: Any) -> bool:
    """Whether ``value`` (from JSON) is of the kind of union member ``tp``."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _fits(get_args(tp)[0], value)
    if isinstance(value, str):
        return tp is Any or (isinstance(tp, type) and issubclass(tp, str | PurePath))
    if isinstance(value, list):
        return origin in _SEQUENCES
    if isinstance(value, dict):
        return origin in _MAPPINGS or (
            isinstance(tp, type) and issubclass(tp, BaseModel)
        )
    return False
