"""One resolved config (``shapo_jax.config.resolve``): preset, validation and task defaults
settled once, for every registered task, without building an env."""

import dataclasses
import json

import pytest

import shapo_envs
from shapo_jax import cli, evaluate
from shapo_jax.config import PRESETS, TASK_DEFAULTS, ConfigError, TrainConfig, from_record, resolve


def as_recorded(config: TrainConfig) -> dict:
    """The config as config.json holds it (tuples as lists)."""
    return json.loads(json.dumps(cli.resolved_config(config)))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_task_resolves_to_values_and_resolving_again_changes_nothing(preset):
    for name in shapo_envs.list_envs():
        spec = shapo_envs.get_spec(name)
        config = resolve(TrainConfig(env=name, preset=preset, algo="trpo_pid"))
        assert all(getattr(config, field) is not None for field in TASK_DEFAULTS), name
        assert config.episode_length == spec.episode_length and type(config.episode_length) is int
        assert config.redraw_resets is spec.redraw_resets
        expected = spec.cost_limit if preset == "none" else 10.0  # the paper preset's limit, per constraint
        if spec.num_constraints == 1:
            assert type(config.cost_limit) is float and config.cost_limit == expected, name
        else:
            assert config.cost_limit == (spec.cost_limit if preset == "none" else (10.0,) * spec.num_constraints)
        assert resolve(config) == config, name
        assert resolve(from_record(as_recorded(config))) == config, name  # config.json reads back to itself


def test_flags_given_win_over_the_task_and_the_preset():
    config = resolve(TrainConfig(env="SafetyPointGoal1", preset="paper", cost_limit=3, episode_length=7,
                                 redraw_resets=False, num_envs=40))
    assert (config.cost_limit, config.episode_length, config.redraw_resets) == (3.0, 7, False)
    assert (config.num_envs, config.unroll_length, config.perturbation_target_kl) == (40, 1000, 1e-5)
    assert resolve(config) == config


def test_a_navigation_task_records_its_own_defaults_in_config_json():
    recorded = as_recorded(resolve(TrainConfig(env="SafetyPointGoal1")))
    assert (recorded["cost_limit"], recorded["episode_length"], recorded["redraw_resets"]) == (25.0, 1000, True)
    assert recorded["hidden_sizes"] == [64, 64] and recorded["num_updates"] == 60
    assert as_recorded(resolve(TrainConfig(env="PointHazard2")))["cost_limit"] == [2.0, 1.0]


@pytest.mark.parametrize("fields,flag", [
    (dict(env="NoSuchTask"), "--env"),
    (dict(env="PointHazard2", algo="cpo"), "--algo"),
    (dict(env="PointHazard", cost_limit=(1.0, 2.0)), "--cost-limit"),
    (dict(env="PointHazard", episode_length=0), "--episode-length"),
    (dict(env="PointHazard", env_module="no_such_module_here"), "--env-module"),
])
def test_resolve_fails_in_one_line_naming_the_flag(fields, flag):
    with pytest.raises(ConfigError) as error:
        resolve(TrainConfig(**fields))
    assert error.value.flag == flag and "\n" not in str(error.value)


def old_record(config: TrainConfig) -> dict:
    """config.json of ``config`` as an older version wrote it: nulls for the task defaults,
    without redraw_resets (added since)."""
    recorded = {**as_recorded(resolve(config)), "cost_limit": None, "episode_length": None}
    del recorded["redraw_resets"]
    return recorded


def test_an_old_config_json_with_nulls_compares_equal_to_its_resolved_run():
    config = TrainConfig(env="SafetyPointGoal1", num_envs=16)
    now = cli.resolved_config(resolve(config))
    assert cli.settings_changed(old_record(config), now) == []
    other = cli.resolved_config(resolve(dataclasses.replace(config, cost_limit=5.0, redraw_resets=False)))
    assert cli.settings_changed(old_record(config), other) == ["--cost-limit 25.0 (now 5.0)",
                                                               "--redraw-resets True (now False)"]


def test_shapo_eval_loads_an_old_config_json_resolved(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(old_record(TrainConfig(env="PointHazard2", num_seeds=3))))
    config = evaluate.load_config(str(tmp_path))
    spec = shapo_envs.get_spec("PointHazard2")
    assert (config.cost_limit, config.episode_length, config.redraw_resets) == ((2.0, 1.0), spec.episode_length, False)
    assert config.num_seeds == 3 and config.out == str(tmp_path) and resolve(config) == config
