"""Public import path of the seed: ``from job_worker.job import identity_exact``."""

from .queue.delayable import Delayable, DelayableChain, DelayableGroup
from .queue.identity import identity_exact
from .queue.options import JobOptions

__all__ = ["Delayable", "DelayableChain", "DelayableGroup", "JobOptions", "identity_exact"]
