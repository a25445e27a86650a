"""Reward functions by name, for GRPO and evaluation: `fn(prompt_record, response_text) -> float`.

Why a registry: a config names rewards and weights (`rewards: {accuracy: 1.0, format: 0.2}`), the trainer logs
each component, and users add their own with `@register_reward("name")` or by naming `package.module:function`.
"""

from __future__ import annotations

import importlib
from typing import Callable, Dict, Mapping, Tuple

from .verify import ends_turn, follows_format, is_correct

RewardFn = Callable[[dict, str], float]
_REWARDS: Dict[str, RewardFn] = {}


def register_reward(name: str, fn: RewardFn | None = None, replace: bool = False):
    """Register `fn` under `name`; usable as `@register_reward("name")`. A second name clash is refused unless
    replace=True (two rewards silently sharing a name would log one as the other)."""
    def add(function: RewardFn) -> RewardFn:
        if name in _REWARDS and not replace and _REWARDS[name] is not function:
            raise ValueError(f"reward {name!r} is already registered — fix: pick another name or pass replace=True")
        _REWARDS[name] = function
        return function
    return add(fn) if fn is not None else add


def reward_names() -> Tuple[str, ...]:
    return tuple(sorted(_REWARDS))


def get_reward(name: str) -> RewardFn:
    """A registered reward, or `package.module:function` imported (and registered under that name)."""
    if name in _REWARDS:
        return _REWARDS[name]
    if ":" in name:
        module, _, attribute = name.partition(":")
        try:
            function = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"reward {name!r} cannot be imported ({err}) — fix: give package.module:function "
                             f"on PYTHONPATH") from None
        return register_reward(name, function)
    raise ValueError(f"unknown reward {name!r} — fix: use one of {', '.join(reward_names())}, register one with "
                     f"myllm_mc.tasks.register_reward, or name package.module:function")


def compute_rewards(record: dict, response: str, weights: Mapping[str, float]) -> Tuple[float, Dict[str, float]]:
    """(weighted sum, {name: unweighted value}) — the components are what GRPO logs."""
    components = {name: float(get_reward(name)(record, response)) for name in weights}
    return sum(weights[name] * value for name, value in components.items()), components


@register_reward("accuracy")
def accuracy_reward(record: dict, response: str) -> float:
    """1 when the answer is exactly right (tagged tasks: inside the tags), else 0."""
    return 1.0 if is_correct(record, response) else 0.0


@register_reward("format")
def format_reward(record: dict, response: str) -> float:
    """1 when the reply has the task's shape: exactly `<answer>…</answer>` for tagged tasks, a bare one-line
    answer otherwise."""
    return 1.0 if follows_format(record, response) else 0.0


@register_reward("end_of_turn")
def end_of_turn_reward(record: dict, response: str) -> float:
    """1 when the reply ends with <|im_end|> (the model stopped by itself rather than at the length limit)."""
    return 1.0 if ends_turn(response) else 0.0
