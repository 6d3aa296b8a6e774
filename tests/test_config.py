"""Tests for ctxmgr.config: presets, TOML/YAML/JSON files, overrides and error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctxmgr.config import PRESETS, CtxmgrConfig, load_config, preset_path
from ctxmgr.errors import ConfigError
from ctxmgr.manager import ContextManager

BUILTIN = (
    "pin_and_slide",
    "relevance",
    "scratchpad",
    "summarize",
    "system_replay",
    "tool_pair_safe",
)

PRESET_PIPELINES = {
    "agent": [
        "tool_pair_safe",
        "pin_and_slide",
        "relevance",
        "summarize",
        "scratchpad",
        "system_replay",
        "loop_guard",
    ],
    "fifo": ["tool_pair_safe", "pin_and_slide"],
    "relevance": ["tool_pair_safe", "pin_and_slide", "relevance"],
    "summary": ["tool_pair_safe", "pin_and_slide", "summarize"],
}


# -- presets -----------------------------------------------------------------------------------


def test_preset_names() -> None:
    """The bundled presets are agent, fifo, relevance and summary."""
    assert PRESETS == ("agent", "fifo", "relevance", "summary")


@pytest.mark.parametrize("name", sorted(PRESET_PIPELINES))
def test_preset_loads_with_its_pipeline(name: str) -> None:
    """Each preset loads, validates and has its documented strategy pipeline."""
    config = load_config(name)
    assert PRESET_PIPELINES[name] == [s.name for s in config.strategies]
    assert name == config.preset
    assert 0 < config.target <= config.trigger <= 1
    assert preset_path(name).is_file()


def test_preset_weights_are_read() -> None:
    """Per-strategy weights in a preset are loaded (relevance preset: pin_and_slide weight 0)."""
    weights = {s.name: s.weight for s in load_config("relevance").strategies}
    assert weights == {"tool_pair_safe": 1.0, "pin_and_slide": 0.0, "relevance": 1.0}


def test_unknown_preset_lists_allowed() -> None:
    """preset_path of an unknown name raises naming 'preset' and the allowed presets."""
    with pytest.raises(ConfigError) as info:
        preset_path("turbo")
    assert (info.value.key, info.value.allowed) == ("preset", PRESETS)


def test_source_that_is_neither_preset_nor_path_is_rejected() -> None:
    """A bare string that is no preset and no path raises listing the presets."""
    with pytest.raises(ConfigError, match="neither a preset name") as info:
        load_config("turbo")
    assert info.value.key == "preset"
    assert "allowed: agent, fifo, relevance, summary" in str(info.value)


# -- files -----------------------------------------------------------------------------------

TOML = """
max_context_tokens = 8000
reserve_output_tokens = 500
trigger = 0.9
target = 0.5

[[strategies]]
name = "tool_pair_safe"
keep_recent_tool_results = 1

[[strategies]]
name = "relevance"
weight = 2.0
recency_weight = 0.5
"""

YAML = """
max_context_tokens: 8000
reserve_output_tokens: 500
trigger: 0.9
target: 0.5
strategies:
  - name: tool_pair_safe
    keep_recent_tool_results: 1
  - name: relevance
    weight: 2.0
    recency_weight: 0.5
"""

JSON = json.dumps(
    {
        "max_context_tokens": 8000,
        "reserve_output_tokens": 500,
        "trigger": 0.9,
        "target": 0.5,
        "strategies": [
            {"name": "tool_pair_safe", "keep_recent_tool_results": 1},
            {"name": "relevance", "weight": 2.0, "recency_weight": 0.5},
        ],
    }
)


@pytest.mark.parametrize(
    ("filename", "text"),
    [("c.toml", TOML), ("c.yaml", YAML), ("c.yml", YAML), ("c.json", JSON)],
)
def test_config_files_of_each_format_load_the_same(
    tmp_path: Path, filename: str, text: str
) -> None:
    """TOML, YAML and JSON files with the same content give the same config."""
    path = tmp_path / filename
    path.write_text(text, encoding="utf-8")
    for source in (path, str(path)):
        config = load_config(source)
        assert (
            config.max_context_tokens,
            config.reserve_output_tokens,
            config.trigger,
            config.target,
        ) == (8000, 500, 0.9, 0.5)
        assert [(s.name, s.weight, s.options) for s in config.strategies] == [
            ("tool_pair_safe", 1.0, {"keep_recent_tool_results": 1}),
            ("relevance", 2.0, {"recency_weight": 0.5}),
        ]


def test_preset_key_in_file_with_overrides(tmp_path: Path) -> None:
    """A file's `preset` key is expanded and its other keys override the preset."""
    path = tmp_path / "c.toml"
    path.write_text('preset = "fifo"\nmax_context_tokens = 4000\ntrigger = 0.95\n')
    config = load_config(path)
    assert PRESET_PIPELINES["fifo"] == [s.name for s in config.strategies]
    assert (
        config.preset,
        config.max_context_tokens,
        config.trigger,
        config.target,
    ) == ("fifo", 4000, 0.95, 0.6)


def test_strategies_in_file_replace_the_preset_list(tmp_path: Path) -> None:
    """A `strategies` list next to `preset` replaces the preset's list."""
    path = tmp_path / "c.yaml"
    path.write_text("preset: agent\nstrategies:\n  - name: pin_and_slide\n")
    assert [s.name for s in load_config(path).strategies] == ["pin_and_slide"]


def test_keyword_overrides_win_and_none_is_ignored(tmp_path: Path) -> None:
    """load_config(**overrides) wins over the source; None overrides are ignored."""
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"preset": "summary", "max_context_tokens": 1000, "target": 0.5}))
    config = load_config(path, max_context_tokens=2000, target=None, model=None)
    assert (config.max_context_tokens, config.target, config.model) == (2000, 0.5, None)
    assert PRESET_PIPELINES["summary"] == [s.name for s in config.strategies]


def test_mapping_and_config_sources() -> None:
    """A mapping and an existing CtxmgrConfig are accepted as sources."""
    config = load_config({"preset": "fifo", "max_context_tokens": 3000})
    again = load_config(config)
    assert isinstance(again, CtxmgrConfig)
    assert config.model_dump() == again.model_dump()


def test_defaults_without_preset() -> None:
    """A mapping with only the window uses the documented defaults and no strategies."""
    config = load_config({"max_context_tokens": 1000})
    assert (
        config.reserve_output_tokens,
        config.trigger,
        config.target,
        config.tokenizer,
        config.history_policy,
        config.protect_recent,
        config.strategies,
    ) == (None, 0.8, 0.6, "tiktoken", "repair", 1, [])


# -- errors ----------------------------------------------------------------------------------


def test_unknown_top_level_key_names_key_and_allowed_keys() -> None:
    """An unknown top-level key raises ConfigError naming it and listing the allowed keys."""
    with pytest.raises(ConfigError) as info:
        load_config({"max_context_tokens": 1000, "max_tokens": 5})
    err = info.value
    assert err.key == "max_tokens"
    assert {"max_context_tokens", "strategies", "trigger", "target", "preset"} <= set(err.allowed)
    assert "max_tokens" not in err.allowed
    assert str(err).startswith("max_tokens: unknown key (allowed: ")


def test_unknown_key_in_file_is_reported(tmp_path: Path) -> None:
    """An unknown key in a TOML file is reported the same way."""
    path = tmp_path / "c.toml"
    path.write_text("max_context_tokens = 1000\ntriger = 0.7\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "triger"
    assert "trigger" in info.value.allowed


def test_unknown_strategy_name_names_index_and_allowed() -> None:
    """An unknown strategy name raises with key strategies[i].name and the installed names."""
    with pytest.raises(ConfigError) as info:
        load_config(
            {"max_context_tokens": 1000, "strategies": [{"name": "pin_and_slide"}, {"name": "lru"}]}
        )
    assert info.value.key == "strategies[1].name"
    assert set(BUILTIN) <= set(info.value.allowed)
    assert "'lru'" in str(info.value)


def test_unknown_strategy_option_names_option_and_allowed() -> None:
    """An unknown option raises with key strategies[i].<option> and the strategy's options."""
    with pytest.raises(ConfigError) as info:
        load_config(
            {
                "max_context_tokens": 1000,
                "strategies": [{"name": "pin_and_slide"}, {"name": "tool_pair_safe", "keep": 2}],
            }
        )
    assert info.value.key == "strategies[1].keep"
    assert "keep_recent_tool_results" in info.value.allowed


def test_bad_strategy_option_value_names_option() -> None:
    """A value failing validation raises with key strategies[i].<option>."""
    with pytest.raises(ConfigError) as info:
        load_config(
            {
                "max_context_tokens": 1000,
                "strategies": [{"name": "system_replay", "every": 0}],
            }
        )
    assert info.value.key == "strategies[0].every"


def test_bad_top_level_value_names_key() -> None:
    """A top-level value failing validation raises naming the key."""
    with pytest.raises(ConfigError) as info:
        load_config({"max_context_tokens": 0})
    assert info.value.key == "max_context_tokens"


def test_negative_weight_names_its_key() -> None:
    """A negative strategy weight raises naming strategies[i].weight."""
    with pytest.raises(ConfigError) as info:
        load_config(
            {"max_context_tokens": 100, "strategies": [{"name": "relevance", "weight": -1}]}
        )
    assert info.value.key == "strategies[0].weight"


def test_target_above_trigger_is_rejected() -> None:
    """Target > trigger is rejected with both values in the message."""
    with pytest.raises(ConfigError, match=r"target \(0\.9\) must not exceed trigger \(0\.8\)"):
        load_config({"max_context_tokens": 1000, "trigger": 0.8, "target": 0.9})


def test_missing_file_is_reported(tmp_path: Path) -> None:
    """A path that does not exist raises ConfigError naming the path."""
    missing = tmp_path / "nope" / "ctxmgr.toml"
    for source in (missing, str(missing)):
        with pytest.raises(ConfigError, match="does not exist") as info:
            load_config(source)
        assert str(missing) in str(info.value)


def test_unknown_extension_is_reported(tmp_path: Path) -> None:
    """A file with an unsupported extension raises listing the supported ones."""
    path = tmp_path / "c.ini"
    path.write_text("[x]\n")
    with pytest.raises(ConfigError, match="unknown extension") as info:
        load_config(path)
    assert info.value.allowed == (".toml", ".yaml", ".yml", ".json")


@pytest.mark.parametrize(
    ("filename", "text"),
    [("c.toml", "max_context_tokens = = 1"), ("c.yaml", "a: [1"), ("c.json", "{nope")],
)
def test_unparsable_file_is_reported(tmp_path: Path, filename: str, text: str) -> None:
    """A file that does not parse raises ConfigError naming the file."""
    path = tmp_path / filename
    path.write_text(text)
    with pytest.raises(ConfigError, match="cannot parse") as info:
        load_config(path)
    assert filename in str(info.value)


def test_file_without_a_mapping_is_rejected(tmp_path: Path) -> None:
    """A JSON file holding a list is rejected."""
    path = tmp_path / "c.json"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="table/mapping"):
        load_config(path)


def test_non_string_preset_is_rejected() -> None:
    """A preset key that is not a string raises naming 'preset'."""
    with pytest.raises(ConfigError) as info:
        load_config({"preset": 3})
    assert info.value.key == "preset"


def test_unsupported_source_type_is_rejected() -> None:
    """A source of another type (an int) raises ConfigError."""
    with pytest.raises(ConfigError, match="int"):
        load_config(42)


# -- ContextManager.from_config ----------------------------------------------------------------


def test_from_config_without_window_or_model_fails() -> None:
    """No max_context_tokens and no model raises ConfigError naming max_context_tokens."""
    with pytest.raises(ConfigError) as info:
        ContextManager.from_config("fifo")
    assert info.value.key == "max_context_tokens"


def test_from_config_with_model_uses_the_registry() -> None:
    """With model='gpt-4o' and no window, the window is gpt-4o's 128,000 tokens."""
    mgr = ContextManager.from_config("fifo", model="gpt-4o")
    assert mgr.budget.max_context_tokens == 128_000
    assert mgr.budget.reserve_output_tokens == 4096


def test_from_config_with_unknown_model_fails() -> None:
    """An unknown model and no window raises ConfigError."""
    with pytest.raises(ConfigError, match="unknown model"):
        ContextManager.from_config("fifo", model="no-such-model-xyz")


def test_context_windows_override_the_registry() -> None:
    """context_windows entries win over the built-in registry."""
    mgr = ContextManager.from_config(
        "fifo", model="gpt-4o", context_windows={"gpt-4o": 50_000}, reserve_output_tokens=1000
    )
    assert (mgr.budget.max_context_tokens, mgr.budget.effective_limit) == (50_000, 49_000)


def test_from_config_builds_strategies_in_config_order(tmp_path: Path) -> None:
    """The manager's strategies follow the config list, with options and weights applied."""
    path = tmp_path / "c.toml"
    path.write_text(TOML)
    mgr = ContextManager.from_config(path)
    assert [s.name for s in mgr.strategies] == ["tool_pair_safe", "relevance"]
    assert mgr.strategies[0].options.keep_recent_tool_results == 1  # type: ignore[attr-defined]
    assert (
        mgr.strategies[1].weight,
        mgr.strategies[1].options.recency_weight,  # type: ignore[attr-defined]
    ) == (2.0, 0.5)


def test_reserve_not_below_window_is_rejected() -> None:
    """reserve_output_tokens >= max_context_tokens raises naming reserve_output_tokens."""
    with pytest.raises(ConfigError) as info:
        ContextManager.from_config("fifo", max_context_tokens=1000, reserve_output_tokens=1000)
    assert info.value.key == "reserve_output_tokens"
