"""
Training and reading a run from Python
======================================

Every ``pyg-sm`` command is one call of :mod:`pyg_sm.runs` with a config
dataclass whose fields are the command's flags. This example writes a small
synthetic cohort, trains SmABMIL on it as ``pyg-sm train`` does, scores the
held-out slides as ``pyg-sm evaluate`` does, and reads the run folder back:
the training history, the metrics, the per-slide predictions and the
per-patch attention.
"""
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

from pyg_sm import make_synthetic_slides
from pyg_sm.runs import RunFolder, ScoreConfig, TrainConfig, evaluate, train

root = Path(tempfile.mkdtemp())
cohort = make_synthetic_slides(root / 'cohort', num_slides=32, feature_dim=16,
                               signal=2.0, slide_images=False)

# %%
# Train: ``pyg-sm train COHORT --out run --epochs 12 --lr 0.002 --heatmaps 0``
# (the best checkpoint by the validation loss is kept).
run = train(TrainConfig(data_dir=cohort, out=root / 'run', epochs=12,
                        lr=2e-3, heatmaps=0))
results = run.results()
print(results['status'], results['model'], results['options'])

history = results['history']
plt.figure(figsize=(5, 3))
plt.plot([e['epoch'] for e in history], [e['train_loss'] for e in history],
         label='training loss')
plt.plot([e['epoch'] for e in history], [e['val_loss'] for e in history],
         label='validation loss')
plt.xlabel('epoch')
plt.legend()
plt.tight_layout()

# %%
# Evaluate the best checkpoint on the validation slides: ``pyg-sm evaluate
# COHORT --checkpoint run/checkpoint.pt --slide-ids ...``.
held_out = results['split']['val']
scored = evaluate(ScoreConfig(data_dir=cohort, checkpoint=run.checkpoint_path,
                              out=root / 'eval', slide_ids=held_out,
                              heatmaps=0))
metrics = scored.results()['metrics']
print({k: metrics[k] for k in ('bag_auroc', 'bag_accuracy',
                               'instance_auroc')})

# %%
# Read any run folder back: the slides' predictions and the attention of
# each patch (``scores/<slide_id>.h5``).
folder = RunFolder(root / 'eval')
for prediction in folder.predictions()[:4]:
    print(prediction.slide_id, prediction.label, prediction.predicted,
          round(prediction.probabilities['1'], 3))
positive = next(p.slide_id for p in folder.predictions() if p.label == '1')
scores = folder.scores(positive)
print(positive, scores.coords.shape, float(scores.attention.sum()))

plt.figure(figsize=(4, 4))
plt.scatter(scores.coords[:, 0], -scores.coords[:, 1],
            c=scores.attention_logits, cmap='turbo', marker='s', s=12)
plt.title(f'{positive}: attention logits')
plt.axis('equal')
plt.axis('off')
