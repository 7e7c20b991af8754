r"""Lists in messages."""
from typing import Iterable


def few(items: Iterable, count: int = 5) -> str:
    r"""The first :obj:`count` of :obj:`items` joined by commas, with
    ``...`` when there are more: how messages name many slides."""
    items = [str(item) for item in items]
    return ', '.join(items[:count]) + (', ...' if len(items) > count else '')


def plural(count: int, noun: str) -> str:
    r"""``1 slide``, ``2 slides``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
