"""This process's place in a launch by ``accelerate launch``/``torchrun`` (one process without a launcher)."""

from __future__ import annotations

import os


def is_main_process() -> bool:
    """False in every process of a launch but the first: only the main one prints and writes files."""
    return int(os.environ.get("RANK") or 0) == 0


class Processes:
    """World size, main process, and waiting for the others."""

    def __init__(self, join: bool = True):
        """``join``: take part in the process group the launcher set up (needed to wait for the others)."""
        self.world_size = int(os.environ.get("WORLD_SIZE") or 1)
        self.is_main = is_main_process()
        self._state = None
        if join and self.world_size > 1:
            from accelerate import PartialState
            self._state = PartialState()

    def barrier(self) -> None:
        if self._state is not None:
            self._state.wait_for_everyone()

    def finish(self) -> None:
        """Wait for every process, then leave the process group."""
        if self._state is None:
            return
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
