"""The two Sm modes as autograd functions whose backward is one more sparse
pass of the same kind, so that memory does not grow with the iterations."""
from typing import Any, Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ._solver import conjugate_gradient


def _edge_dot(target_side: Tensor, source_side: Tensor,
              edge_index: Tensor) -> Tensor:
    r"""Per-edge :math:`\langle t_i, s_j \rangle` for every edge
    :math:`j \to i`: the gradient pattern of :math:`\partial (t^\top A s) /
    \partial A_{ij}` restricted to the edges."""
    return (target_side[edge_index[1]] * source_side[edge_index[0]]).sum(-1)


class SmApprox(torch.autograd.Function):
    r"""``G(0) = x, G(t) = alpha A G(t-1) + (1 - alpha) x``, returns ``G(T)``.

    ``G(T) = P(A) x`` for the polynomial
    ``P(z) = (1 - alpha) sum_{k<T} alpha^k z^k + alpha^T z^T``, so the
    gradient for x is ``P(A^T) grad`` and the one for alpha is
    ``sum_k P'_k <(A^T)^k grad, x>``: both come from one sweep over the powers
    ``(A^T)^k grad``, holding two (N, F) buffers whatever T is. The gradient
    for the edge weights pairs those powers with the forward iterates, which
    are kept only when that gradient is asked for.
    """
    @staticmethod
    def forward(ctx: Any, x: Tensor, alpha: Tensor, edge_weight: Tensor,
                adjacency: Any, num_steps: int) -> Tensor:
        a = float(alpha)
        keep_iterates = ctx.needs_input_grad[2]
        scaled_x = x * (1.0 - a)
        iterates = []
        out = x
        for _ in range(num_steps):
            if keep_iterates:
                iterates.append(out)
            out = adjacency.matmul(out).mul_(a).add_(scaled_x)
        ctx.adjacency = adjacency
        ctx.num_steps = num_steps
        ctx.save_for_backward(x, alpha, *iterates)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor):
        x, alpha, *iterates = ctx.saved_tensors
        adjacency, num_steps = ctx.adjacency, ctx.num_steps
        need_x, need_alpha, need_weight = ctx.needs_input_grad[:3]
        a = float(alpha)

        power = grad_out
        grad_x = grad_out * (1.0 - a)
        dots = [torch.vdot(power.flatten(), x.flatten())] if need_alpha else []
        grad_weight = None
        if need_weight:
            grad_weight = a * _edge_dot(power, iterates[-1],
                                        adjacency.edge_index)
        for k in range(1, num_steps + 1):
            power = adjacency.matmul(power, transpose=True)
            coefficient = a**k * ((1.0 - a) if k < num_steps else 1.0)
            grad_x.add_(power, alpha=coefficient)
            if need_alpha:
                dots.append(torch.vdot(power.flatten(), x.flatten()))
            if need_weight and k < num_steps:
                grad_weight.add_(
                    _edge_dot(power, iterates[num_steps - 1 - k],
                              adjacency.edge_index), alpha=a**(k + 1))

        grad_alpha = None
        if need_alpha:
            # Coefficients of dP/dalpha: k a^(k-1) (1-a) - a^k below T, and
            # T a^(T-1) at T.
            derivative = [k * a**(k - 1) * (1.0 - a) - a**k
                          for k in range(num_steps)] + [
                              num_steps * a**(num_steps - 1)]
            grad_alpha = (torch.stack(dots) * torch.tensor(
                derivative, dtype=x.dtype, device=x.device)).sum()
            grad_alpha = grad_alpha.to(alpha.dtype).reshape(alpha.shape)
        return (grad_x if need_x else None), grad_alpha, grad_weight, None, None


class SmExact(torch.autograd.Function):
    r"""Solves ``((1 + g) I - g A) y = x`` with ``g = alpha / (1 - alpha)``.

    Implicit differentiation: with ``lam = M^-T grad`` (one more conjugate
    gradient solve, with ``A^T``), the gradients are ``lam`` for x,
    ``(<A^T lam, y> - <lam, y>) dg/dalpha`` for alpha and
    ``g <lam_i, y_j>`` for the weight of edge ``j -> i``.
    """
    @staticmethod
    def forward(ctx: Any, x: Tensor, alpha: Tensor, edge_weight: Tensor,
                adjacency: Any, solver: dict) -> Tensor:
        a = float(alpha)
        y = _solve(adjacency, x, a, transpose=False, **solver)
        ctx.adjacency = adjacency
        ctx.solver = solver
        ctx.save_for_backward(y, alpha)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor):
        y, alpha = ctx.saved_tensors
        adjacency = ctx.adjacency
        need_x, need_alpha, need_weight = ctx.needs_input_grad[:3]
        a = float(alpha)
        gamma = a / (1.0 - a)
        lam = _solve(adjacency, grad_out, a, transpose=True, **ctx.solver)

        grad_alpha = grad_weight = None
        if need_alpha:
            smoothed = adjacency.matmul(lam, transpose=True)
            grad_gamma = torch.vdot((smoothed - lam).flatten(), y.flatten())
            grad_alpha = (grad_gamma / (1.0 - a)**2).to(alpha.dtype)
            grad_alpha = grad_alpha.reshape(alpha.shape)
        if need_weight:
            grad_weight = gamma * _edge_dot(lam, y, adjacency.edge_index)
        return (lam if need_x else None), grad_alpha, grad_weight, None, None


def _solve(adjacency: Any, rhs: Tensor, a: float, transpose: bool,
           batch: Optional[Tensor], num_graphs: int, tol: float,
           max_iter: int, on_nonconvergence: str) -> Tensor:
    gamma = a / (1.0 - a)

    def operator(v: Tensor) -> Tensor:
        return adjacency.matmul(v, transpose=transpose).mul_(-gamma).add_(
            v, alpha=1.0 + gamma)

    # (1 - alpha) rhs is the exact answer on isolated nodes and a fair start
    # everywhere else.
    return conjugate_gradient(operator, rhs, rhs * (1.0 - a), batch,
                              num_graphs, tol, max_iter, on_nonconvergence)
