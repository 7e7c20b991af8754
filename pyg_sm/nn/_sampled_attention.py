r"""The engine of probabilistic smooth attention's training step: every
attention sample's softmax within its bag and the linear head on it, in one
autograd function.

For bag :math:`b` (its nodes contiguous), sample :math:`m` and output
:math:`k`:

.. math::
    f_{nm} = \mathrm{clip}(\mu_n + \sigma_n \epsilon_{nm}, -20, 20), \qquad
    y_{bmk} = \sum_{n \in b} \mathrm{softmax}_b(\mathbf{f}_{\cdot m})_n
    \, g_{nk}

with :math:`\sigma = \exp(\frac{1}{2} \log \sigma^2)` and :math:`g` the
head's per-node values. Written out, it keeps two :math:`N \times M` arrays
(the noise and the exponentials) and runs about 16 passes over them, where
autograd through the same ops keeps and reads several times as many
(measured: ``benchmarks/prob_smooth.py``). Its backward is exact and runs
once (no double backward)."""
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from .prob_smooth_pool import SAMPLE_CLIP


def _bags(sizes: Sequence[int]):
    start = 0
    for size in sizes:
        yield slice(start, start + size)
        start += size


class _SampledSoftmaxHead(torch.autograd.Function):
    @staticmethod
    def forward(ctx, mu: Tensor, log_var: Optional[Tensor], values: Tensor,
                noise: Optional[Tensor], sizes: Tuple[int, ...],
                mean_weights: bool):
        if noise is None:
            f = mu.unsqueeze(-1).clone()
            reach = mu.abs()
        else:
            std = torch.exp(0.5 * log_var)
            f = torch.addcmul(mu.unsqueeze(-1), std.unsqueeze(-1), noise)
            low, high = torch.aminmax(noise)
            reach = mu.abs() + std * torch.maximum(-low, high)
        # Whether any sample can reach the clip: the backward then masks.
        clipped = bool(reach.max() > SAMPLE_CLIP) if reach.numel() else False
        if clipped:
            f.clamp_(-SAMPLE_CLIP, SAMPLE_CLIP)
        samples = f.size(1)
        out = values.new_empty(len(sizes), samples, values.size(1))
        totals = values.new_empty(len(sizes), samples)
        for b, nodes in enumerate(_bags(sizes)):
            e = f[nodes]  # a view: the exponentials replace the samples
            e.sub_(e.amax(0))
            e.exp_()
            totals[b] = e.sum(0)
            out[b] = (e.T @ values[nodes]) / totals[b].unsqueeze(-1)
        weights = None
        if mean_weights:  # each node's weight, averaged over the samples
            weights = torch.cat([
                e_b @ (1 / totals[b]) / samples for b, e_b in
                enumerate(f[nodes] for nodes in _bags(sizes))])
        ctx.sizes, ctx.clipped = sizes, clipped
        ctx.save_for_backward(mu, log_var, values, noise, f, totals, out)
        ctx.mark_non_differentiable(*([] if weights is None else [weights]))
        return out, weights

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor, _):
        mu, log_var, values, noise, e, totals, out = ctx.saved_tensors
        grad_f = torch.empty_like(e)
        grad_values = torch.empty_like(values) \
            if ctx.needs_input_grad[2] else None
        for b, nodes in enumerate(_bags(ctx.sizes)):
            # d y_bmk / d f_nm = s_nm (g_nk - y_bmk), s = e / T: with
            # a = dy / T and c = <y, dy> / T, the gradient is e (g a^T - c).
            scale = (1 / totals[b]).unsqueeze(-1)
            a = grad_out[b] * scale  # (M, K)
            c = (out[b] * a).sum(-1)  # (M,)
            part = torch.matmul(values[nodes], a.T, out=grad_f[nodes])
            part.sub_(c).mul_(e[nodes])
            if grad_values is not None:
                grad_values[nodes] = e[nodes] @ a
        if ctx.clipped:
            # torch.clamp's gradient: 1 inside [min, max], bounds included.
            if noise is None:
                unclipped = mu.unsqueeze(-1)
            else:
                unclipped = torch.addcmul(
                    mu.unsqueeze(-1), torch.exp(0.5 * log_var).unsqueeze(-1),
                    noise)
            grad_f.masked_fill_(unclipped.abs() > SAMPLE_CLIP, 0)
        grad_mu = grad_f.sum(1)
        grad_log_var = None
        if noise is not None and ctx.needs_input_grad[1]:
            grad_log_var = 0.5 * torch.exp(0.5 * log_var) * \
                torch.linalg.vecdot(grad_f, noise, dim=1)
        return grad_mu, grad_log_var, grad_values, None, None, None


def sampled_softmax_head(mu: Tensor, log_var: Optional[Tensor],
                         values: Tensor, noise: Optional[Tensor],
                         sizes: Sequence[int], mean_weights: bool = False
                         ) -> Tuple[Tensor, Optional[Tensor]]:
    r"""The per-sample weighted sums :math:`(B, M, K)` of :obj:`values`
    :math:`(N, K)` under the softmax within each bag of the attention
    samples :math:`\mathrm{clip}(\mu + \sigma \epsilon, -20, 20)`
    (:obj:`noise` :math:`\epsilon` :math:`(N, M)`; :obj:`None`, with no
    :obj:`log_var`, for the one sample :math:`\mu`), the nodes of each bag
    contiguous, :obj:`sizes` the bags' sizes in order. With
    :obj:`mean_weights`, also each node's weight averaged over the samples
    :math:`(N,)` (no gradient), else :obj:`None`."""
    return _SampledSoftmaxHead.apply(mu, log_var, values, noise,
                                     tuple(int(s) for s in sizes),
                                     mean_weights)
