r"""Kaplan-Meier curves of risk groups, drawn by lifelines. Rendering
returns an image; writing it is the caller's choice."""
from typing import Dict, Optional


def render_kaplan_meier(groups: Dict, p_value: Optional[float] = None,
                        title: str = '', time_label: str = 'time'):
    r"""The Kaplan-Meier curve of each group (a name to a fitted lifelines
    ``KaplanMeierFitter``, as
    :func:`~pyg_sm.train.survival.kaplan_meier_groups` gives them), with
    confidence bands, censoring marks, the numbers at risk under the axis
    and the log-rank :obj:`p_value` in the title.

    Returns:
        A :class:`PIL.Image.Image` (RGBA).
    """
    from lifelines.plotting import add_at_risk_counts
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    fig = Figure(figsize=(5.6, 4.4), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.subplots()
    colors = {'low risk': '#2c7bb6', 'high risk': '#d7191c'}
    for name, fitter in groups.items():
        fitter.plot_survival_function(ax=ax, show_censors=True,
                                      ci_alpha=0.15,
                                      color=colors.get(name))
    if groups:
        add_at_risk_counts(*groups.values(), ax=ax,
                           rows_to_show=['At risk'])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(time_label)
    ax.set_ylabel('survival probability')
    test = '' if p_value is None else f'log-rank p = {p_value:.2g}'
    ax.set_title('; '.join(t for t in (title, test) if t), fontsize=9)
    ax.legend(loc='lower left', fontsize=8)
    fig.tight_layout()
    canvas.draw()
    return Image.frombuffer('RGBA', canvas.get_width_height(),
                            canvas.buffer_rgba(), 'raw', 'RGBA', 0, 1).copy()
