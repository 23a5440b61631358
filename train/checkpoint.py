"""Checkpoints with orbax's ``CheckpointManager``: every ``every`` steps and at exit, atomically.

A checkpoint at step s holds two items: ``state`` (the train state pytree --
parameters, EMA, optimiser state, step) and ``data`` (JSON: what fixes the data
order at s, see ``train.data.Batches.state``). Orbax writes each step to a
``<s>.orbax-checkpoint-tmp-*`` directory and renames it to ``<s>`` once complete,
so a crash mid-save leaves the previous checkpoint as the latest; leftover
temporary directories are ignored when listing steps and removed on start-up.
In a multi-process run every process calls ``save`` and ``restore`` (orbax
coordinates them; replicated arrays are written once).
"""
from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp

TMP_SUFFIX = ".orbax-checkpoint-tmp"


class Checkpointer:
    """``save(step, state, data)`` every ``every`` steps (or when forced); ``restore`` the latest."""

    def __init__(self, directory: str, every: int = 1000, keep: int | None = 3, async_save: bool = True):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"checkpoint_every must be an integer >= 1, got {every!r}")
        if keep is not None and (not isinstance(keep, int) or keep < 1):
            raise ValueError(f"keep_checkpoints must be an integer >= 1 or None, got {keep!r}")
        self.directory, self.every = os.path.abspath(directory), every
        options = ocp.CheckpointManagerOptions( max_to_keep=keep, cleanup_tmp_directories=True,
            enable_async_checkpointing=async_save)
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "data"))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state, data: dict, force: bool = False) -> bool:
        """Save if ``step`` is on the interval (or ``force``) and not saved already; True if saved."""
        if step in self._manager.all_steps() or (step % self.every and not force):
            return False
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data))
        return bool(self._manager.save(step, args=args, force=True))

    def restore(self, abstract_state, step: int | None = None):
        """(state, data) of ``step`` (default: the latest), laid out as ``abstract_state`` says.

        ``abstract_state`` is a pytree of ``jax.ShapeDtypeStruct`` with shardings (see
        ``abstract_like``), so a checkpoint written by any number of processes restores
        onto the current devices.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no complete checkpoint in {self.directory}")
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore())
        out = self._manager.restore(step, args=args)
        return out.state, dict(out.data)

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def abstract_like(tree, sharding):
    """The ``ShapeDtypeStruct`` pytree of ``tree`` with every leaf on ``sharding``."""
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree)
