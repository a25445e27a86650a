"""Verifiable tasks: the shipped sets in data/tasks/ (built by tools/build_tasks.py), their verifiers, and the
reward registry GRPO and evaluation use."""

from .io import TASKS_DIR, load_records, task_files
from .rewards import (
                      RewardFn,
                      accuracy_reward,
                      compute_rewards,
                      end_of_turn_reward,
                      format_reward,
                      get_reward,
                      register_reward,
                      reward_names,
)
from .verify import (
                      ANSWER_CLOSE,
                      ANSWER_OPEN,
                      END_OF_TURN,
                      TASKS,
                      TaskSpec,
                      accuracy_by_task,
                      ends_turn,
                      extract_answer,
                      follows_format,
                      is_correct,
                      normalize,
                      register_task,
                      split_reply,
                      task_spec,
)

__all__ = [
    "ANSWER_CLOSE", "ANSWER_OPEN", "END_OF_TURN", "TASKS", "TASKS_DIR", "RewardFn", "TaskSpec", "accuracy_by_task",
    "accuracy_reward", "compute_rewards", "end_of_turn_reward", "ends_turn", "extract_answer", "follows_format",
    "format_reward", "get_reward", "is_correct", "load_records", "normalize", "register_reward", "register_task",
    "reward_names", "split_reply", "task_files", "task_spec",
]
