r"""``demo``: SmABMIL, ProbSmoothABMIL and plain ABMIL on synthetic slides,
trained by :func:`~pyg_sm.runs.train` (the ``demo`` recipe) and scored by
:func:`~pyg_sm.runs.evaluate` on the held-out slides."""
import dataclasses
import shlex

from ..datasets import SlideImages, make_synthetic_slides
from ..datasets.annotations import AnnotationFolder
from ..datasets.synthetic import SYNTHETIC_MPP
from ..train.records import SlideAttention
from ..visualize import render_froc_curve
from ._common import (
    command_line,
    most_lesioned,
    print_table,
    versions,
    write_heatmaps,
)
from .config import DemoConfig, ScoreConfig, TrainConfig, as_dict
from .folder import FINISHED, RunFolder
from .scoring import evaluate
from .training import train


@dataclasses.dataclass(frozen=True)
class DemoModel:
    r"""A model of the demo: the name it shows, and the model and preset
    (:data:`~pyg_sm.models.MODELS`) it trains."""
    name: str
    model: str
    preset: str


#: The demo's models: Sm, its probabilistic sibling (torchmil 1.0.2's
#: defaults: 1000 attention samples per bag in training, 5000 in
#: evaluation) and the same attention without any smoothing.
DEMO_MODELS = (DemoModel('SmABMIL', 'sm_abmil', 'sm'),
               DemoModel('ProbSmoothABMIL', 'prob_smooth_abmil', 'prob'),
               DemoModel('ABMIL', 'sm_abmil', 'abmil'))
#: Where the demo puts its training runs, inside its folder.
TRAIN_DIR = 'train'


def demo(config: DemoConfig) -> RunFolder:
    r"""Makes :obj:`config.num_slides` synthetic slides with images, trains
    each of :data:`DEMO_MODELS` (SmABMIL, ProbSmoothABMIL, and SmABMIL
    without Sm: ABMIL) with the ``demo`` recipe into
    ``OUT/train/<model>/``, evaluates each on the held-out slides into
    ``OUT/<model>/`` (a prediction folder, as ``pyg-sm evaluate`` writes
    it), draws the models' attention (and ProbSmoothABMIL's uncertainty)
    over the most lesioned held-out slides into ``OUT/heatmaps/`` and
    writes ``OUT/results.json``. Returns the demo's folder.

    With :obj:`config.task` ``'survival'`` the slides have times that
    shorten with their lesion burden (about 30% censored), the models
    are trained with the discrete-time NLL, and the table gives the
    held-out c-index (Harrell's and Uno's), the time-dependent AUC, the
    integrated Brier score and the instance AUROC of the attention; each
    model's folder has its ``km.png``."""
    out = RunFolder(config.out)
    survival = config.task == 'survival'
    data_dir = make_synthetic_slides(out.path / 'data',
                                     num_slides=config.num_slides,
                                     seed=config.seed, signal=config.signal,
                                     task=config.task)
    print(f'synthetic dataset: {config.num_slides} slides in {data_dir}, '
          f"slide images in {data_dir / 'slides'}", flush=True)
    # The runs read one cohort: each graph is built once.
    cache = out.graph_cache_dir
    metrics, runs, evaluated, frocs = {}, {}, [], {}
    for entry in DEMO_MODELS:
        name = entry.name
        trained = train(TrainConfig.from_recipe(
            'demo', data_dir=data_dir, out=out.path / TRAIN_DIR / name,
            model=entry.model, preset=entry.preset, epochs=config.epochs,
            seed=config.seed, heatmaps=0, overwrite=True, graph_cache=cache,
            task=config.task))
        run = trained.results()
        held_out = run['split']['val']
        scored = evaluate(ScoreConfig(
            data_dir=data_dir, checkpoint=trained.checkpoint_path,
            out=out.path / name, slide_ids=held_out, heatmaps=0,
            graph_cache=cache,
            annotations=None if survival else data_dir / 'annotations',
            mpp=SYNTHETIC_MPP, overwrite=True))
        scored.name = name
        evaluated.append(scored)
        seconds = sum(entry['seconds'] for entry in run['history'])
        print(f"{name}: trained {config.epochs} epochs in {seconds:.1f} s, "
              f"final loss {run['history'][-1]['train_loss']:.3f}",
              flush=True)
        results = scored.results()
        metrics[name] = dict(results['metrics'])
        if not survival:
            frocs[name] = results['localization']['froc']
            metrics[name]['froc'] = frocs[name]['score']
        runs[name] = {**metrics[name], 'train_seconds': seconds,
                      'loss_history': [e['train_loss']
                                       for e in run['history']],
                      'options': run['options'],
                      'train_dir': str(trained.path),
                      'evaluation_dir': str(scored.path)}
    print_table(metrics)
    if frocs:
        out.write_froc_curve(render_froc_curve(frocs))
    first = evaluated[0]
    lesions = [SlideAttention(p.slide_id, patch_labels=first.scores(
        p.slide_id).patch_labels) for p in first.predictions()]
    heatmaps = write_heatmaps(out, most_lesioned(lesions, config.heatmaps),
                              evaluated, SlideImages(data_dir / 'slides'),
                              outlines=None if survival else
                              AnnotationFolder(data_dir / 'annotations'))
    out.write_results({'kind': 'demo', 'status': FINISHED,
                       'command': command_line(), 'config': as_dict(config),
                       'versions': versions(), 'runs': runs,
                       'heatmaps': heatmaps})
    print(f'\nresults: {out.results_path}' + (
        f'; attention over the slides: {out.heatmaps_dir}' if heatmaps
        else '') + '\nexplore them: ' + shlex.join(
            ['pyg-sm', 'view', *(str(run.path) for run in evaluated),
             '--slides-dir', str(data_dir / 'slides')]))
    return out
