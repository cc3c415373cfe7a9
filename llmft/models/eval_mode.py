"""The eval-mode bracket: dropout off for a block, then the model back in the mode it was in."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator


@contextmanager
def eval_mode(model: Any) -> Iterator[Any]:
    """`model` in eval mode inside the block; on leaving (also by an exception) back in train mode if it was in it, so
    an evaluation in the middle of training never leaves dropout off."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
