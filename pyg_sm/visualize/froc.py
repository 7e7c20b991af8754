r"""The FROC curve of a localization result: sensitivity against average
false positives per slide, with CAMELYON16's reading points. Rendering
returns an image; writing it is the caller's choice."""
from typing import Dict, Sequence


def render_froc_curve(curves: Dict[str, Dict],
                      rates: Sequence[float] = (0.25, 0.5, 1, 2, 4, 8)):
    r"""One line per entry of :obj:`curves` (a name to a FROC result's
    ``curve``, ``fps_per_slide`` and ``sensitivity``, with its ``score``
    if known), on a logarithmic false-positive axis marked at :obj:`rates`.

    Returns:
        A :class:`PIL.Image.Image` (RGBA).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    fig = Figure(figsize=(5.0, 3.6), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.subplots()
    for name, froc in curves.items():
        curve = froc['curve']
        order = sorted(zip(curve['fps_per_slide'], curve['sensitivity']))
        score = froc.get('score')
        ax.step([max(x, rates[0] / 2) for x, _ in order],
                [y for _, y in order], where='post',
                label=name if score is None else f'{name} ({score:.3f})')
    for rate in rates:
        ax.axvline(rate, color='0.85', linewidth=0.8, zorder=0)
    ax.set_xscale('log')
    ax.set_xlim(rates[0] / 2, rates[-1] * 2)
    ax.set_xticks(list(rates), [f'{r:g}' for r in rates])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel('average false positives per slide')
    ax.set_ylabel('lesion sensitivity')
    ax.set_title('FROC (score: mean sensitivity at the marks)', fontsize=9)
    ax.legend(loc='lower right', fontsize=8)
    fig.tight_layout()
    canvas.draw()
    return Image.frombuffer('RGBA', canvas.get_width_height(),
                            canvas.buffer_rgba(), 'raw', 'RGBA', 0, 1).copy()
