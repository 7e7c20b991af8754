"""Random patch layouts for the graph and heatmap tests."""
import torch


def random_grid_patches(num, seed, scale=1):
    gen = torch.Generator().manual_seed(seed)
    cells = torch.randperm(15 * 15, generator=gen)[:num]
    return torch.stack([cells // 15, cells % 15], dim=1) * scale
