"""Public import path for job graphs: ``from job_worker.delay import group, chain``."""

from .queue.delayable import Delayable, DelayableChain, DelayableGroup, chain, group

__all__ = ["Delayable", "DelayableChain", "DelayableGroup", "chain", "group"]
