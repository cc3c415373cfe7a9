"""Whether a backbone keeps packed examples apart (task.packing=true needs it)."""

from __future__ import annotations

from typing import Any

import torch

from llmft.models.eval_mode import eval_mode


@torch.no_grad()
def attends_within_examples(model: Any, vocab_size: int) -> bool:
    """Probe the backbone: the logits of an example packed after another must equal its logits alone. False for
    architectures that ignore packed position ids in their attention mask (packing would leak across examples)."""
    generator = torch.Generator().manual_seed(0)
    first, second = (torch.randint(3, max(vocab_size, 4), (n,), generator=generator) for n in (5, 7))
    device = next(model.parameters()).device
    packed_ids = torch.cat([first, second])[None].to(device)
    positions = torch.cat([torch.arange(5), torch.arange(7)])[None].to(device)
    with eval_mode(model):
        alone = model(input_ids=second[None].to(device), use_cache=False).logits[0]
        packed = model(input_ids=packed_ids, position_ids=positions, use_cache=False).logits[0, 5:]
    return bool(torch.allclose(alone.float(), packed.float(), atol=1e-4, rtol=1e-3))
