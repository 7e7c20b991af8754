r"""Checkpoints: the model's name and options (as :data:`~pyg_sm.models.MODELS`
declares them), the patch-graph settings and the weights. Loading builds
the right model class."""
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import torch

from ..models.registry import MODELS, model_spec
from ..utils.errors import MissingFileError, PygSmError
from ..utils.files import atomic_path
from ..version import __version__
from .tasks import Task

#: The format written; 'pyg-sm/1' (before models had names) still loads.
CHECKPOINT_FORMAT = 'pyg-sm/2'
_READABLE = ('pyg-sm/1', CHECKPOINT_FORMAT)


def model_name(model: torch.nn.Module) -> str:
    r"""The name :data:`~pyg_sm.models.MODELS` knows :obj:`model`'s class
    by."""
    for name, spec in MODELS.items():
        if type(model) is spec.model_class:
            return name
    raise ValueError(f"{type(model).__name__} is not a model checkpoints "
                     f"know (known: {list(MODELS)})")


def atomic_save(obj, path: Union[str, Path]) -> None:
    r""":func:`torch.save` to a temporary file beside :obj:`path`, then a
    rename: a crash never leaves a half-written file at :obj:`path`."""
    with atomic_path(path) as temporary:
        torch.save(obj, temporary)


def save_checkpoint(path: Union[str, Path], model: torch.nn.Module,
                    feature_dim: int, options: Dict, graph: Dict,
                    classes: Optional[Sequence[str]] = None,
                    task: Optional[Dict] = None, **info) -> None:
    r"""Writes :obj:`model` (its name, :obj:`options` as given to its
    constructor, its weights), the instance feature size, the patch-graph
    settings :obj:`graph`, the class names (in the order of the model's
    outputs), the :obj:`task` (``{'task': 'classification' or 'survival',
    'bag_by': ...}``; for survival also the criterion's options, e.g. the
    cut points, the label columns and the training bags' times and events,
    which Uno's c-index needs) and any further JSON-like :obj:`info` (e.g.
    the epoch) to :obj:`path`, atomically."""
    name = model_name(model)
    model_spec(name).check(options)
    # What rebuilds the criterion comes from the model's own task.
    task = {**Task.of_model(model, classes).entry(), 'bag_by': 'slide',
            **(task or {})}
    atomic_save({'format': CHECKPOINT_FORMAT, 'model': name,
                 'options': dict(options), 'feature_dim': feature_dim,
                 'graph': dict(graph), 'pyg_sm_version': __version__,
                 'classes': None if classes is None else list(classes),
                 'task': task, 'info': info,
                 'state_dict': model.state_dict()}, path)


def read_checkpoint(path: Union[str, Path]) -> Dict:
    r"""The checkpoint's contents, in the current format's terms: the model
    name, options, feature size, graph settings, classes (``['0', '1']``
    for checkpoints that did not record them) and the weights."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"no checkpoint {path}")
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:
        raise PygSmError(f"{path} is not a pyg-sm checkpoint ({error})") \
            from error
    if not isinstance(checkpoint, dict) or checkpoint.get(
            'format') not in _READABLE:
        raise PygSmError(f"{path} is not a pyg-sm checkpoint")
    if checkpoint['format'] == 'pyg-sm/1':  # SmABMIL, before names
        checkpoint = {**checkpoint, 'model': 'sm_abmil',
                      'options': checkpoint['model_options']}
    # Checkpoints before survival were classifiers of slides.
    checkpoint.setdefault('task', {'task': 'classification',
                                   'bag_by': 'slide'})
    checkpoint.setdefault('classes', None)
    if checkpoint['classes'] is None and \
            checkpoint['task']['task'] == 'classification':
        checkpoint['classes'] = ['0', '1']
    return checkpoint


def load_checkpoint(
        path: Union[str, Path]) -> Tuple[torch.nn.Module, Dict, Dict]:
    r"""Returns the model (in eval mode, on the CPU), its options and its
    patch-graph settings."""
    checkpoint = read_checkpoint(path)
    return build_from_checkpoint(checkpoint), checkpoint['options'], \
        checkpoint['graph']


def build_from_checkpoint(checkpoint: Dict) -> torch.nn.Module:
    r"""The model of a checkpoint :func:`read_checkpoint` returned, with its
    weights, in eval mode, on the CPU."""
    # The criterion the task builds (a survival loss, class weights).
    criterion = Task.from_entry(checkpoint.get('task') or {},
                                checkpoint.get('classes')).criterion()
    model = model_spec(checkpoint['model']).build(
        checkpoint['feature_dim'], criterion, **checkpoint['options'])
    model.load_state_dict(checkpoint['state_dict'])
    return model.eval()
