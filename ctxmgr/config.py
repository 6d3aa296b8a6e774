"""Configuration: TOML, YAML or dict, validated with pydantic; presets by name.

A config names the budget and an ordered list of strategies::

    # ctxmgr.toml
    preset = "agent"              # optional: start from a preset, override below
    model = "gpt-4o"              # or max_context_tokens = 128000
    reserve_output_tokens = 4096
    trigger = 0.8
    target = 0.6

    [[strategies]]
    name = "tool_pair_safe"
    keep_recent_tool_results = 3

    [[strategies]]
    name = "pin_and_slide"

Strategy order is pipeline order. Every error is a :class:`~ctxmgr.errors.ConfigError`
naming the key (``strategies[1].keep_recent``) and, where finite, the allowed values.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ctxmgr.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "PRESETS",
    "CtxmgrConfig",
    "StrategyConfig",
    "load_config",
    "preset_path",
]

#: Names of the bundled presets (``ctxmgr/presets/<name>.toml``).
PRESETS: tuple[str, ...] = ("agent", "fifo", "relevance", "summary")


#: Upper bound of any token count in a config: 1e9 tokens, 100x the largest context window
#: announced so far (Llama 4 Scout, 10 M), so a typo such as 10**30 is an error.
MAX_TOKENS = 1_000_000_000


class StrategyConfig(BaseModel):
    """One entry of ``strategies``: a registered name, a score weight, and options.

    Attributes:
        name: a registered strategy name (``ctxmgr strategies`` lists them).
        weight: multiplier of the strategy's scores (ignored by non-scoring strategies).
    """

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    name: str
    weight: float = Field(default=1.0, ge=0)

    @property
    def options(self) -> dict[str, Any]:
        """The strategy-specific options (everything except ``name`` and ``weight``)."""
        return dict(self.model_extra or {})


class CtxmgrConfig(BaseModel):
    """A validated ctxmgr configuration.

    Attributes:
        preset: the preset this config started from, if any (informational).
        model: model name; sets ``max_context_tokens`` from the registry when that is unset
            and picks the tokenizer encoding.
        max_context_tokens: the context window in tokens.
        reserve_output_tokens: tokens kept free for the reply (default: 10 % of the window,
            at most 4,096).
        trigger: compaction starts above this fraction of the effective limit.
        target: compaction aims for this fraction of the effective limit.
        tokenizer: ``"tiktoken"`` (exact, default) or ``"approx"`` (4 characters a token).
        history_policy: ``"repair"`` or ``"strict"`` for malformed histories.
        protect_recent: how many of the newest segments are never evicted (>= 1).
        context_windows: overrides of the model registry, ``{model name: tokens}``.
        provider: wire rules the fitted context must obey (:mod:`ctxmgr.providers`):
            ``"openai"``, ``"anthropic"``, ``"gemini"``, or ``"auto"`` (from ``model``:
            ``claude*`` anthropic, ``gemini*`` gemini, else openai).
        reserve_growth: multiplier applied to the reply reserve each time a reply is cut
            for length (:meth:`ContextManager.record_stop`); the reserve is capped at half
            the context window. ``1.0`` turns growth off.
        strategies: the pipeline, in order.
    """

    # strict: True is not 1, "8000" is not 8000 (a config says what it means)
    model_config = ConfigDict(extra="forbid", strict=True)

    preset: str | None = None
    model: str | None = None
    max_context_tokens: int | None = Field(default=None, gt=0, le=MAX_TOKENS)
    reserve_output_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS)
    trigger: float = Field(default=0.8, gt=0, le=1)
    target: float = Field(default=0.6, gt=0, le=1)
    tokenizer: str = "tiktoken"
    history_policy: Literal["repair", "strict"] = "repair"
    protect_recent: int = Field(default=1, ge=1)
    context_windows: dict[str, int] = Field(default_factory=dict)
    provider: Literal["auto", "openai", "anthropic", "gemini"] = "auto"
    reserve_growth: float = Field(default=1.5, ge=1.0, le=10.0)
    strategies: list[StrategyConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> CtxmgrConfig:
        if self.target > self.trigger:
            raise ValueError(f"target ({self.target}) must not exceed trigger ({self.trigger})")
        return self


def preset_path(name: str) -> Path:
    """Return the path of a bundled preset TOML file.

    Raises:
        ConfigError: unknown preset.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}", key="preset", allowed=PRESETS)
    return Path(str(resources.files("ctxmgr") / "presets" / f"{name}.toml"))


def _read_file(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise ConfigError(f"config path {str(path)!r} is a directory, not a file")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {str(path)!r} is not UTF-8 text (byte {exc.start}): is it a binary file?"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(
                f"cannot read config {str(path)!r}: unknown extension {suffix!r}",
                allowed=(".toml", ".yaml", ".yml", ".json"),
            )
    except ConfigError:
        raise
    except RecursionError:
        raise ConfigError(f"cannot parse {str(path)!r}: nested too deeply") from None
    except Exception as exc:  # parse errors of three libraries, each with line info
        mark = getattr(exc, "problem_mark", None)  # YAML: one line with the position
        if mark is not None:
            what = getattr(exc, "problem", None) or exc
            where = f"line {mark.line + 1}, column {mark.column + 1}"
            raise ConfigError(f"cannot parse {str(path)!r}: {where}: {what}") from None
        raise ConfigError(f"cannot parse {str(path)!r}: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{str(path)!r} must hold a table/mapping at top level")
    return data


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _raw_from(source: Any) -> dict[str, Any]:
    if isinstance(source, CtxmgrConfig):
        return source.model_dump(mode="json", exclude_none=True)
    if isinstance(source, Mapping):
        return dict(source)
    if isinstance(source, Path):
        return _read_file(source)
    if isinstance(source, str):
        if source in PRESETS:
            return {"preset": source}
        if source.lower().endswith((".toml", ".yaml", ".yml", ".json")) or "/" in source:
            return _read_file(Path(source))
        raise ConfigError(
            f"{source!r} is neither a preset name nor a config file path",
            key="preset",
            allowed=PRESETS,
        )
    raise ConfigError(f"cannot build a config from {type(source).__name__}")


def load_config(source: Any = "agent", **overrides: Any) -> CtxmgrConfig:
    """Load and validate a configuration.

    Args:
        source: a preset name (``"agent"``), a path to a ``.toml`` / ``.yaml`` / ``.json``
            file, a mapping, or a :class:`CtxmgrConfig`. A ``preset`` key inside a file or
            mapping is expanded first and the other keys override it (``strategies``,
            when given, replaces the preset's list).
        **overrides: top-level keys that win over ``source`` (``None`` values ignored).

    Returns:
        The validated config; strategy names and options are checked against the
        installed strategies.

    Raises:
        ConfigError: unreadable file, unknown key, bad value, unknown strategy or option.
    """
    raw = _raw_from(source)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    preset = raw.get("preset")
    if preset is not None:
        if not isinstance(preset, str):
            raise ConfigError("must be a string", key="preset", allowed=PRESETS)
        base = _read_file(preset_path(preset))
        base.pop("preset", None)
        base.update(raw)
        raw = base
    try:
        config = CtxmgrConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = _format_loc(tuple(err["loc"]))
        allowed: tuple[str, ...] = ()
        if err["type"] == "extra_forbidden":
            allowed = tuple(CtxmgrConfig.model_fields)
            raise ConfigError("unknown key", key=key, allowed=allowed) from None
        raise ConfigError(err["msg"], key=key) from None
    validate_strategies(config)
    return config


def validate_strategies(config: CtxmgrConfig) -> list[Any]:
    """Instantiate-check every strategy entry; return the validated option objects.

    Raises:
        ConfigError: unknown strategy name or invalid option, naming ``strategies[i]...``.
    """
    from ctxmgr.plugins import get_strategy_types

    types = get_strategy_types()
    out = []
    for i, entry in enumerate(config.strategies):
        cls = types.get(entry.name)
        if cls is None:
            raise ConfigError(
                f"unknown strategy {entry.name!r}",
                key=f"strategies[{i}].name",
                allowed=tuple(types),
            )
        try:
            out.append(cls.Options.model_validate(entry.options))
        except ValidationError as exc:
            err = exc.errors()[0]
            key = f"strategies[{i}]." + _format_loc(tuple(err["loc"]))
            if err["type"] == "extra_forbidden":
                raise ConfigError(
                    f"unknown option for strategy {entry.name!r}",
                    key=key,
                    allowed=tuple(cls.Options.model_fields),
                ) from None
            raise ConfigError(err["msg"], key=key) from None
    return out
