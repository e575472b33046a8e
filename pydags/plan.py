"""What a run is planned as: its stages, their dependencies and priorities, and the
functions their workers call, fixed when the run starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Plan:
    """What the scheduler needs from a pipeline: stages, dependencies, priorities."""

    stages: dict[str, Any]  # name -> Stage
    dependencies: dict[str, set[str]]
    priority: dict[str, float]
    inputs: dict[str, set[str]]  # the dependencies whose results a stage takes as arguments
    # mapped stage -> for each mapped argument, the mapped stage feeding it item by item
    # (None where the argument is given whole)
    linked: dict[str, list[str | None]] = field(default_factory=dict)
    # id of each stage -> its name when the run was planned (a stage renamed since keeps it)
    names: dict[int, str] = field(default_factory=dict)
    # name -> the function its worker calls, made once while planning (fresh from its file)
    functions: dict[str, Any] = field(default_factory=dict)
