"""Command-line options made from the config schema: one declaration per setting (mnetdeploy/config.py).

A command lists the config keys it exposes; each becomes a click option whose type, choices and help come
from the schema field, and whose default is "not given" (None), so the config file (or the schema default)
applies unless the user types the flag. `config_from_options` turns the parsed options into a `Config` with
the same loader `run` uses, and a bad value is reported under the flag the user typed:

    @config_option("quantize.num_calib")            # --num-calib, an int >= 1, help from the schema
    @config_option("bench.ssh_options", "--ssh-option", multiple=True)

Lists are comma-separated (`--precisions fp32,int8`) unless the option is `multiple` (repeat the flag).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import click

from mnetdeploy.config import Config, load_config
from mnetdeploy.errors import UserError


class ConfigOption(click.Option):
    """A click option that sets the config key `config_key`."""

    def __init__(self, *args: Any, config_key: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config_key = config_key


def schema_field(dotted: str):
    """The pydantic FieldInfo of a dotted config key, e.g. "bench.runs"."""
    model: Any = Config
    *parents, leaf = dotted.split(".")
    for part in parents:
        model = model.model_fields[part].annotation
    return model.model_fields[leaf]


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X; Annotated[X, ...] -> X."""
    if get_origin(annotation) is typing.Annotated:
        return get_args(annotation)[0]
    if get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else annotation
    return annotation


def _click_type(annotation: Any) -> Any:
    annotation = _unwrap(annotation)
    if get_origin(annotation) is Literal:
        return click.Choice([str(a) for a in get_args(annotation)])
    return {int: int, float: float, str: str}.get(annotation, str)


def _split(flag: str) -> Callable:
    """A callback turning "a,b" (or repeated flags) into a list of strings, None when not given."""
    def convert(ctx: click.Context, param: click.Parameter, value: Any) -> list | None:
        if value is None or value == ():
            return None
        texts = value if isinstance(value, tuple) else (value,)
        items = [t.strip() for text in texts for t in str(text).split(",") if t.strip()]
        if not items:
            raise UserError(f"{flag}: empty; pass a comma-separated list")
        return items  # typed and checked by the schema, which names the item and the flag on error
    return convert


def config_option(dotted: str, *decls: str, multiple: bool = False, help: str | None = None,
                  **kwargs: Any) -> Callable:
    """A click option for config key `dotted` (flag: --<key with dashes> unless `decls` name it)."""
    field = schema_field(dotted)
    leaf = dotted.rsplit(".", 1)[-1]
    flag = decls[0] if decls else "--" + leaf.replace("_", "-")
    name = dotted.replace(".", "__")
    annotation = _unwrap(field.annotation)
    default = field.get_default(call_default_factory=True)
    text = help or field.description or ""
    if default not in (None, [], ()):
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        text += f"  [default: {str(shown).lower() if isinstance(shown, bool) else shown}]"
    options: dict[str, Any] = {"help": text, "default": None, "config_key": dotted, "cls": ConfigOption}
    if annotation is bool:
        decl = f"{flag}/--no-{flag[2:]}"
        return click.option(decl, name, **options, **kwargs)
    if get_origin(annotation) is list:
        item = _click_type(get_args(annotation)[0])
        if isinstance(item, click.Choice):
            text += f"  (from {', '.join(item.choices)})"
            options["help"] = text
        options["callback"] = _split(flag)
        options.setdefault("metavar", "A,B,..." if not multiple else None)
        if multiple:
            options.update(multiple=True, default=())
        return click.option(flag, name, **options, **kwargs)
    return click.option(flag, name, type=_click_type(annotation), **options, **kwargs)


def config_options(*dotted: str) -> Callable:
    """Several `config_option`s with their default flags, in the order given (as --help lists them)."""
    def decorate(fn: Callable) -> Callable:
        for key in reversed(dotted):
            fn = config_option(key)(fn)
        return fn
    return decorate


def config_overrides(ctx: click.Context) -> tuple[dict[str, Any], dict[str, str]]:
    """(dotted key -> value, dotted key -> flag) of every config option the user gave."""
    overrides, flags = {}, {}
    for param in ctx.command.params:
        if isinstance(param, ConfigOption):
            value = ctx.params.get(param.name)
            if value is not None:
                overrides[param.config_key] = value
                flags[param.config_key] = max(param.opts, key=len)
    return overrides, flags


def config_from_options(ctx: click.Context, config_path: str | Path | None = None,
                        extra: dict[str, Any] | None = None) -> Config:
    """The Config a command runs with: the file (if any), then the flags the user typed, then `extra`
    (values the command derives itself), validated by the same loader as `run`."""
    overrides, flags = config_overrides(ctx)
    overrides.update({k: v for k, v in (extra or {}).items() if v is not None})
    return load_config(config_path, overrides, flags)
