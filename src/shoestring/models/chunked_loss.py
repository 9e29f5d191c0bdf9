"""Cross-entropy of a linear head that never holds the full ``[tokens, vocab]`` logits.

A language model's loss usually materialises the logits of every token (for
Llama 3's 128,256-token vocabulary that is 0.5 MB per token in float32) and
autograd keeps them, or their softmax, until the backward pass. Here the
tokens are cut into ``chunks``; each chunk's logits are computed in float32,
turned into the loss *and* the gradients of the hidden states and the head
weight (``softmax − one_hot``, Liger Kernel's fused linear cross-entropy,
Hsu et al. 2024, arXiv:2410.10989, section 3.2), and freed before the next.
Autograd then keeps only those gradients (the size of the hidden states and
of the head weight), which backward scales by the incoming gradient.

The gradients are computed during the forward pass, so call it when a
backward will follow (training); without gradients it only sums the loss.

>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> h, w = torch.randn(10, 8), torch.randn(30, 8)
>>> t = torch.randint(0, 30, (10,))
>>> full = torch.nn.functional.cross_entropy(h @ w.T, t)
>>> bool(torch.allclose(chunked_cross_entropy(h, w, t, chunks=3), full))
True
"""

from __future__ import annotations

import math

import torch


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, targets, chunks: int, ignore_index: int):
        n = h.shape[0]
        valid_all = targets != ignore_index
        # Mean over the scored tokens, as F.cross_entropy(ignore_index=...) takes it.
        # float32 at least: the log-sum-exp over a vocabulary loses too much in bf16.
        acc = torch.promote_types(weight.dtype, torch.float32)
        count = valid_all.sum().clamp(min=1).to(acc)
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.zeros_like(h) if want_h else None
        grad_w = torch.zeros_like(weight, dtype=acc) if want_w else None
        total = torch.zeros((), dtype=acc, device=h.device)
        size = math.ceil(n / chunks) if n else 1
        for start in range(0, n, size):
            hc, tc = h[start:start + size], targets[start:start + size]
            valid = valid_all[start:start + size]
            safe = tc.clamp(min=0)
            logits = (hc @ weight.t()).to(acc)
            lse = torch.logsumexp(logits, dim=-1)
            picked = logits.gather(1, safe[:, None]).squeeze(1)
            total += ((lse - picked) * valid).sum()
            if want_h or want_w:
                # d loss / d logits = (softmax − one_hot) / count on scored rows, in place.
                probs = logits.sub_(lse[:, None]).exp_()
                probs[torch.arange(len(tc), device=h.device), safe] -= 1.0
                probs.mul_((valid.to(probs.dtype) / count)[:, None])
                g = probs.to(weight.dtype)
                if want_h:
                    grad_h[start:start + size] = (g @ weight).to(h.dtype)
                if want_w:
                    grad_w += (g.t() @ hc.to(weight.dtype)).to(acc)
            del logits
        ctx.save_for_backward(grad_h if want_h else None,
                              grad_w.to(weight.dtype) if want_w else None)
        return total / count

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        return (grad_h * grad_out.to(grad_h.dtype) if grad_h is not None else None,
                grad_w * grad_out.to(grad_w.dtype) if grad_w is not None else None,
                None, None, None)


def chunked_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                          chunks: int = 8, ignore_index: int = -1) -> torch.Tensor:
    """Mean cross-entropy of ``h @ weight.T`` against ``targets`` (``ignore_index`` skipped).

    ``h`` is ``[N, d]`` (or ``[B, T, d]``, flattened), ``weight`` ``[V, d]``,
    ``targets`` ``[N]``. Equal to ``F.cross_entropy(h @ weight.T, targets)`` in
    value and gradients, with at most ``N/chunks`` rows of logits alive.
    """
    if chunks < 1:
        raise ValueError(f"chunks must be at least 1, got {chunks}")
    h = h.reshape(-1, h.shape[-1])
    return _ChunkedLinearCrossEntropy.apply(h, weight, targets.reshape(-1), chunks, ignore_index)
