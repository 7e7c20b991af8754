"""Conjugate gradient for the block-diagonal systems of a batch of graphs."""
import warnings
from typing import Callable, Optional

import torch
from torch import Tensor
from torch_geometric.utils import scatter


class SmConvergenceWarning(RuntimeWarning):
    r"""Warned when the exact-mode solve of :class:`pyg_sm.Sm` stops at
    :obj:`max_iter` before reaching :obj:`tol`."""


class SmConvergenceError(RuntimeError):
    r"""Raised instead of :class:`SmConvergenceWarning` when
    :class:`pyg_sm.Sm` was built with :obj:`on_nonconvergence='raise'`."""


def conjugate_gradient(
    operator: Callable[[Tensor], Tensor],
    rhs: Tensor,
    initial: Tensor,
    batch: Optional[Tensor],
    num_graphs: int,
    tol: float,
    max_iter: int,
    on_nonconvergence: str,
) -> Tensor:
    r"""Solves :obj:`operator(x) = rhs` for a symmetric positive definite
    :obj:`operator` that never mixes the nodes of different graphs.

    Every (graph, column) pair is its own linear system with its own step
    sizes and its own stopping test :math:`\|r\| \le tol \|b\|`, so a bag's
    solution neither depends on nor waits for the scale of the other bags.
    Once the recurrence says the residual is small, the true residual is
    recomputed and the iteration restarted from there if it is not: this keeps
    float32 drift, or an operator that is not symmetric, from passing as
    converged.
    """
    def dot(u: Tensor, v: Tensor) -> Tensor:
        if batch is None:
            return (u * v).sum(dim=0, keepdim=True)
        return scatter(u * v, batch, dim=0, dim_size=num_graphs, reduce='sum')

    def per_node(value: Tensor) -> Tensor:
        return value if batch is None else value.index_select(0, batch)

    threshold = tol**2 * dot(rhs, rhs)
    x = initial.clone()
    iterations = 0
    while True:
        residual = rhs - operator(x)
        residual_sq = dot(residual, residual)
        if bool((residual_sq <= threshold).all()) or iterations >= max_iter:
            break
        direction = residual.clone()
        while iterations < max_iter:
            iterations += 1
            image = operator(direction)
            curvature = dot(direction, image)
            # Converged systems have zero residual and zero curvature: they
            # take no step instead of a 0/0.
            step = torch.where(curvature > 0, residual_sq / curvature,
                               torch.zeros_like(curvature))
            x.addcmul_(per_node(step), direction)
            residual.addcmul_(per_node(step), image, value=-1)
            new_residual_sq = dot(residual, residual)
            if bool((new_residual_sq <= threshold).all()):
                break
            ratio = torch.where(residual_sq > 0,
                                new_residual_sq / residual_sq,
                                torch.zeros_like(residual_sq))
            direction = residual.addcmul(per_node(ratio), direction)
            residual_sq = new_residual_sq

    if not bool((residual_sq <= threshold).all()):
        scale = threshold.sqrt().clamp_min(torch.finfo(rhs.dtype).tiny) / tol
        reached = float((residual_sq.sqrt() / scale).max())
        message = (f"Sm(mode='exact'): conjugate gradient stopped after "
                   f"max_iter={max_iter} iterations at relative residual "
                   f"{reached:.3e} > tol={tol:.1e}. Raise 'max_iter' or "
                   f"'tol', or check that the adjacency is symmetric with "
                   f"spectral radius at most 1 (normalize=True ensures it).")
        if on_nonconvergence == 'raise':
            raise SmConvergenceError(message)
        warnings.warn(message, SmConvergenceWarning, stacklevel=4)
    return x
