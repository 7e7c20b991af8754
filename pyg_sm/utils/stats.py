r"""Small statistics shared by exports and pictures."""
import torch
from torch import Tensor


def percentiles(values: Tensor) -> Tensor:
    r"""The percentile (0 to 100) of each value within :obj:`values`: its
    average rank among them, scaled so that the lowest is 0 and the highest
    100 (ties share a rank; a single value is 100)."""
    values = values.detach().double().reshape(-1)
    if values.numel() == 1:
        return torch.full_like(values, 100.0)
    ordered = torch.sort(values).values
    below = torch.searchsorted(ordered, values, right=False)
    upto = torch.searchsorted(ordered, values, right=True)
    rank = (below + upto - 1).double() / 2
    return 100.0 * rank / (values.numel() - 1)
