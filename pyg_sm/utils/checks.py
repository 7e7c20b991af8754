r"""Argument checks shared by the whole library. Each raises a
:class:`ValueError` or :class:`TypeError` that names the argument and says
what was expected (``tests/test_bad_input.py`` is the table of cases)."""
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

#: Integer dtypes accepted for node indices and batch vectors.
INDEX_DTYPES = (torch.int32, torch.int64)


def check_choice(name: str, value, choices: Sequence) -> None:
    if value not in choices:
        raise ValueError(f"'{name}' must be one of {list(choices)} "
                         f"(got {value!r})")


def check_count(name: str, value: int) -> None:
    r"""A non-negative int (a number of steps or layers)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"'{name}' must be an int (got "
                        f"{type(value).__name__})")
    if value < 0:
        raise ValueError(f"'{name}' must be non-negative (got {value})")


def check_dim(name: str, value: int) -> None:
    r"""A positive int (a feature or layer size)."""
    check_count(name, value)
    if value == 0:
        raise ValueError(f"'{name}' must be positive (got 0)")


def check_positive(name: str, value: Optional[float],
                   allow_none: bool = False) -> None:
    r"""A positive real number (or :obj:`None` if :obj:`allow_none`)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"'{name}' must be a number (got "
                        f"{type(value).__name__})")
    if not value > 0 or value != value or value == float('inf'):
        raise ValueError(f"'{name}' must be positive and finite (got "
                         f"{value})")


def check_alpha(alpha: Union[float, str], name: str = 'alpha') -> None:
    if isinstance(alpha, str):
        if alpha != 'trainable':
            raise ValueError(f"'{name}' must be 'trainable' or a float in "
                             f"(0, 1) (got '{alpha}')")
    elif isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"'{name}' must be 'trainable' or a float in (0, 1) "
                        f"(got {type(alpha).__name__})")
    elif not 0.0 < alpha < 1.0:
        raise ValueError(f"'{name}' must lie strictly inside (0, 1) "
                         f"(got {alpha})")


def check_features(x) -> None:
    r"""Node features: a floating-point tensor of shape (num_nodes, *)."""
    if not isinstance(x, Tensor) or not torch.is_floating_point(x):
        raise TypeError(f"'x' must be a floating-point tensor (got "
                        f"{getattr(x, 'dtype', type(x).__name__)})")
    if x.dim() == 0:
        raise ValueError("'x' must have shape (num_nodes, *) (got a "
                         "0-dim tensor)")


def check_edge_index(edge_index: Tensor, num_nodes: int) -> None:
    if edge_index.dtype not in INDEX_DTYPES:
        raise TypeError(f"'edge_index' must hold int64 or int32 node "
                        f"indices (got dtype {edge_index.dtype})")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"'edge_index' must have shape (2, num_edges) "
                         f"(got {tuple(edge_index.shape)})")
    if edge_index.numel() > 0:
        low, high = int(edge_index.min()), int(edge_index.max())
        if low < 0 or high >= num_nodes:
            raise ValueError(f"'edge_index' must hold node indices in "
                             f"[0, {num_nodes - 1}] for {num_nodes} nodes "
                             f"(found values in [{low}, {high}])")


def check_batch(batch: Tensor, num_nodes: int) -> int:
    r"""Validates a batch vector and returns the number of graphs."""
    if batch.dtype not in INDEX_DTYPES:
        raise TypeError(f"'batch' must be an integer tensor (got dtype "
                        f"{batch.dtype})")
    if batch.dim() != 1 or batch.numel() != num_nodes:
        raise ValueError(f"'batch' must have shape ({num_nodes},), one "
                         f"graph index per node (got {tuple(batch.shape)})")
    if num_nodes == 0:
        return 0
    if int(batch.min()) < 0:
        raise ValueError("'batch' must hold non-negative graph indices")
    return int(batch.max()) + 1


def check_edge_weight(edge_weight: Tensor, num_edges: int,
                      normalize: bool) -> None:
    if not torch.is_floating_point(edge_weight):
        raise TypeError(f"'edge_weight' must be a floating-point tensor "
                        f"(got dtype {edge_weight.dtype})")
    if edge_weight.dim() != 1 or edge_weight.numel() != num_edges:
        raise ValueError(f"'edge_weight' must have shape ({num_edges},), "
                         f"one weight per edge (got "
                         f"{tuple(edge_weight.shape)})")
    if not bool(torch.isfinite(edge_weight.detach()).all()):
        raise ValueError("'edge_weight' must be finite (found NaN or inf)")
    if normalize and edge_weight.numel() > 0 and bool(
            (edge_weight.detach() < 0).any()):
        raise ValueError("'edge_weight' must be non-negative when "
                         "normalize=True (degrees would be negative)")


def check_dense_inputs(X: Tensor, adj: Tensor,
                       mask: Optional[Tensor]) -> Tensor:
    r"""Validates the padded ``(X, adj, mask)`` form and returns the boolean
    mask."""
    if not isinstance(X, Tensor) or X.dim() < 2:
        raise ValueError(f"'X' must have shape (batch_size, bag_size, ...) "
                         f"(got {tuple(getattr(X, 'shape', ()))})")
    batch_size, bag_size = X.shape[:2]
    if not isinstance(adj, Tensor):
        raise TypeError(f"'adj' must be a tensor (got {type(adj).__name__})")
    if adj.layout not in (torch.strided, torch.sparse_coo):
        raise TypeError(f"'adj' must be dense or sparse COO (got layout "
                        f"{adj.layout}); convert it with .to_sparse_coo()")
    if tuple(adj.shape) != (batch_size, bag_size, bag_size):
        raise ValueError(f"'adj' must have shape (batch_size, bag_size, "
                         f"bag_size) = ({batch_size}, {bag_size}, {bag_size}) "
                         f"to match 'X' (got {tuple(adj.shape)})")
    if not torch.is_floating_point(adj):
        raise TypeError(f"'adj' must hold floating-point weights (got dtype "
                        f"{adj.dtype})")
    if not torch.is_floating_point(X) and not X.dtype == torch.uint8:
        raise TypeError(f"'X' must be a floating-point tensor (got dtype "
                        f"{X.dtype})")
    if mask is None:
        return torch.ones(batch_size, bag_size, dtype=torch.bool,
                          device=X.device)
    if not isinstance(mask, Tensor) or \
            tuple(mask.shape) != (batch_size, bag_size):
        raise ValueError(f"'mask' must have shape (batch_size, bag_size) = "
                         f"({batch_size}, {bag_size}) to match 'X' (got "
                         f"{tuple(getattr(mask, 'shape', ()))})")
    mask = mask != 0
    empty = (~mask.any(dim=1)).nonzero().flatten()
    if empty.numel() > 0:
        raise ValueError(f"every bag needs at least one unmasked instance; "
                         f"bag(s) {empty.tolist()} have none")
    return mask


def check_coords(coords) -> None:
    r"""Patch coordinates: a finite tensor of shape (num_patches, 2)."""
    if not isinstance(coords, Tensor) or coords.dim() != 2 or \
            coords.size(1) != 2:
        raise ValueError(f"'coords' must have shape (num_patches, 2) (got "
                         f"{tuple(getattr(coords, 'shape', ()))})")
    if coords.is_floating_point() and not bool(torch.isfinite(coords).all()):
        raise ValueError("'coords' must be finite")


def check_probability(name: str, value: float) -> None:
    r"""A rate in :math:`[0, 1)` (dropout)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"'{name}' must be a number (got "
                        f"{type(value).__name__})")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"'{name}' must lie in [0, 1) (got {value})")
