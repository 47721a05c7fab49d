"""Evaluation harness: tasks with explicit conventions, blind methods, one command for a table.

    >>> from defusion.eval import evaluate
    >>> evaluate("nlm", "aio3,LIVE1:jpeg10", data_root="../shared/data", out_dir="results/nlm")

or ``defusion eval --method nlm --data-root ../shared/data --tasks aio3,LIVE1:jpeg10 --out results/nlm``.
"""

from .methods import estimate_noise_sigma, load_method, load_plugin, method_names, register_method
from .runner import CONVENTION, evaluate, markdown_table
from .tasks import PRESETS, Task, discover_paired_sets, iter_samples, parse_task, parse_tasks

__all__ = [
    "CONVENTION",
    "PRESETS",
    "Task",
    "discover_paired_sets",
    "estimate_noise_sigma",
    "evaluate",
    "iter_samples",
    "load_method",
    "load_plugin",
    "markdown_table",
    "method_names",
    "parse_task",
    "parse_tasks",
    "register_method",
]
