r"""The inputs of the pool and the models reduced to one form: bags (nodes,
a prepared adjacency, a batch vector), and the converters between the
reference's padded ``(X, adj, mask)`` form and PyG batches."""
from .adjacency import Adjacency, prepare_adjacency
from .bags import PADDING_ATTENTION, Bags, as_bags
from .dense import batch_to_dense, dense_to_batch

__all__ = ['Adjacency', 'prepare_adjacency', 'PADDING_ATTENTION', 'Bags',
           'as_bags', 'batch_to_dense', 'dense_to_batch']
