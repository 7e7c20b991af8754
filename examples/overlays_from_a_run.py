"""
Attention over the slide image, from a run folder
==================================================

A run folder holds each slide's attention (``scores/<slide_id>.h5``);
:func:`pyg_sm.visualize.render_overlay` draws it over the slide image that
OpenSlide reads, with the true lesions and the patches of highest attention
at full resolution. It returns a PIL image and writes no file. This example
trains SmABMIL on synthetic slides with pyramidal TIFF images, scores them
and draws one of them.
"""
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

from pyg_sm import make_synthetic_slides
from pyg_sm.datasets import SlideImages
from pyg_sm.runs import RunFolder, ScoreConfig, TrainConfig, evaluate, train
from pyg_sm.visualize import render_overlay

root = Path(tempfile.mkdtemp())
cohort = make_synthetic_slides(root / 'cohort', num_slides=24, feature_dim=16,
                               signal=2.0)
run = train(TrainConfig(data_dir=cohort, out=root / 'run', epochs=10,
                        lr=2e-3, heatmaps=0))
scored = evaluate(ScoreConfig(data_dir=cohort, checkpoint=run.checkpoint_path,
                              out=root / 'eval',
                              slide_ids=run.results()['split']['val'],
                              heatmaps=0))

# %%
# The slide with the most lesion patches, drawn from the run folder.
folder = RunFolder(scored.path, name='SmABMIL')
slide_id = max(folder.slide_ids,
               key=lambda s: int(folder.scores(s).patch_labels.sum()))
scores = folder.scores(slide_id)
slide = SlideImages(cohort / 'slides').open(slide_id)
try:
    image = render_overlay(slide, scores.coords,
                           {'SmABMIL': scores.attention_logits},
                           scores.patch_size_level0, scores.patch_labels,
                           title=slide_id, top_k=4)
finally:
    slide.close()

plt.figure(figsize=(9, 6))
plt.imshow(image)
plt.axis('off')
plt.tight_layout()
