r"""From torchmil to pyg-sm: :func:`from_torchmil` turns a torchmil
``Sm``, ``SmAttentionPool``, ``SmABMIL`` or ``SmTransformerABMIL`` of
either generation (0.1.0, the reference's, and 1.0.x) into the pyg-sm
module that computes the same thing. torchmil is never imported: its
modules are read through their attributes and weights."""
import copy
from typing import Optional, Union

import torch
from torch import Tensor

from ..nn.attention_pool import POOL_LAYERS, SmAttentionPool
from ..nn.prob_smooth_pool import ProbSmoothAttentionPool
from ..nn.sm import _ALPHA_MARGIN, Sm
from ..nn.sm_transformer import SmTransformerEncoder
from .prob_smooth_abmil import (
    ProbSmoothABMIL,
    SmoothABMIL,
    TransformerProbSmoothABMIL,
)
from .sm_abmil import SmABMIL
from .sm_transformer_abmil import SmTransformerABMIL

KINDS = ('Sm', 'SmAttentionPool', 'SmABMIL', 'SmTransformerABMIL',
         'ProbSmoothAttentionPool', 'ProbSmoothABMIL', 'SmoothABMIL',
         'TransformerProbSmoothABMIL')
#: torchmil 1.0.2's probabilistic models, by class name.
PROBABILISTIC = {'ProbSmoothABMIL': ProbSmoothABMIL,
                 'SmoothABMIL': SmoothABMIL,
                 'TransformerProbSmoothABMIL': TransformerProbSmoothABMIL}


def _is_torchmil(module, name: str) -> bool:
    return type(module).__name__ == name and \
        type(module).__module__.split('.')[0] == 'torchmil'


def _alpha(sm) -> Union[float, Tensor]:
    r"""pyg-sm's :math:`\alpha` of a torchmil ``Sm`` (either generation):
    torchmil stores ``coef`` and runs its approx mode with
    :math:`1 / (1 + coef)` and its exact mode with :math:`\gamma = coef`,
    i.e. :math:`\alpha = coef / (1 + coef)`."""
    return _alpha_of_coef(sm.sm.coef, sm.mode)


def _alpha_of_coef(coef, mode: str) -> Tensor:
    value = coef.detach().double() if isinstance(coef, Tensor) \
        else torch.tensor(float(coef), dtype=torch.float64)
    if not value > 0:
        raise ValueError(f"torchmil's Sm has coef={float(value)}: its alpha "
                         f"lies outside (0, 1) and has no pyg-sm "
                         f"equivalent")
    return 1 / (1 + value) if mode == 'approx' else value / (1 + value)


def _convert_sm(sm, **sm_kwargs) -> Sm:
    alpha = _alpha(sm)
    trainable = isinstance(sm.sm.coef, torch.nn.Parameter)
    ours = Sm(alpha='trainable' if trainable else float(alpha),
              num_steps=getattr(sm, 'num_steps', 10), mode=sm.mode,
              **sm_kwargs)
    if trainable and ours.alpha_logit is not None:  # none: 0 approx steps
        _set_alpha(ours, alpha)
    return ours.to(**_like(sm))


def _set_alpha(ours: Sm, alpha: Tensor) -> None:
    r"""Sets a trainable alpha to :obj:`alpha` (the inverse of
    :attr:`Sm.alpha <pyg_sm.Sm.alpha>`)."""
    share = (alpha - _ALPHA_MARGIN) / (1 - 2 * _ALPHA_MARGIN)
    with torch.no_grad():
        ours.alpha_logit.copy_(torch.logit(share).to(ours.alpha_logit))


def _like(module) -> dict:
    r"""The device and floating dtype of a module's tensors, for
    :meth:`torch.nn.Module.to`."""
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return dict(device=tensor.device, dtype=tensor.dtype)
    return {}


def _copy_linear(ours, theirs) -> None:
    r"""Weights of a Linear (or Identity), with torchmil's spectral
    normalization (a parametrization) mapped to pyg-sm's hook: the original
    weight and the power-iteration vectors, so that eval outputs agree."""
    if not isinstance(theirs, torch.nn.Linear):
        return
    from torch.nn.utils import parametrize

    with torch.no_grad():
        if parametrize.is_parametrized(theirs, 'weight'):
            norm = theirs.parametrizations.weight[0]
            ours.weight_orig.copy_(theirs.parametrizations.weight.original)
            ours.weight_u.copy_(norm._u)
            ours.weight_v.copy_(norm._v)
            # The hook's weight, as its next eval forward computes it.
            sigma = torch.dot(norm._u, torch.mv(ours.weight_orig,
                                                norm._v))
            ours.weight.copy_(ours.weight_orig / sigma)
        else:
            ours.weight.copy_(theirs.weight)
        if theirs.bias is not None:
            ours.bias.copy_(theirs.bias)


def _normalized(linear) -> bool:
    from torch.nn.utils import parametrize

    return isinstance(linear, torch.nn.Linear) and \
        parametrize.is_parametrized(linear, 'weight')


def _convert_pool(pool, normalize: bool, **sm_kwargs) -> SmAttentionPool:
    smooths = not isinstance(pool.sm, torch.nn.Identity)
    if hasattr(pool, 'sm_where'):  # torchmil 1.0.x
        where = pool.sm_where if smooths else 'none'
        placement = dict(sm_layers=0, sm_pre=where == 'early',
                         sm_mid=where == 'mid', sm_post=where == 'late')
        mlp = []
    else:  # 0.1.0
        placement = dict(sm_layers=len(pool.mlp), sm_pre=pool.sm_pre,
                         sm_post=pool.sm_post)
        mlp = list(pool.mlp)
    if len({_normalized(m) for m in mlp}) > 1:
        raise ValueError('some but not all Sm layers of the pool are '
                         'spectrally normalized: no pyg-sm equivalent')
    layers = [name for name, linear in (('proj1', [pool.proj1]),
                                        ('mlp', mlp),
                                        ('proj2', [pool.proj2]))
              if linear and _normalized(linear[0])]
    ours = SmAttentionPool(
        pool.in_dim, att_dim=pool.att_dim, act=pool.act,
        sm_mode=pool.sm.mode if smooths else 'approx',
        sm_steps=pool.sm.num_steps if smooths else 10,
        normalize=normalize, spectral_norm_layers=layers, **placement,
        **sm_kwargs).to(**_like(pool))
    if smooths:
        ours.sm = _convert_sm(pool.sm, normalize=False, **sm_kwargs)
    for mine, theirs in ((ours.proj1, pool.proj1), (ours.proj2, pool.proj2),
                         *zip(ours.mlp, mlp)):
        _copy_linear(mine, theirs)
    return ours


def _copy_module(ours, theirs) -> None:
    with torch.no_grad():
        for mine, source in zip(ours.parameters(), theirs.parameters()):
            mine.copy_(source)


def _convert_encoder(encoder, normalize: bool,
                     **sm_kwargs) -> SmTransformerEncoder:
    layers = list(encoder.layers)
    first = layers[0]
    attention = first.att_module
    ours = SmTransformerEncoder(
        first.norm1.normalized_shape[0],
        out_dim=encoder.norm.normalized_shape[0],
        att_dim=attention.att_dim, n_heads=attention.n_heads,
        n_layers=len(layers), use_mlp=first.use_mlp,
        add_self=encoder.add_self, dropout=attention.dropout,
        sm_mode=attention.sm.mode, sm_steps=attention.sm.num_steps,
        normalize=normalize, **sm_kwargs).to(**_like(encoder))
    for mine, theirs in zip(ours.layers, layers):
        if not isinstance(theirs.in_proj, torch.nn.Identity) or \
                not isinstance(theirs.att_module.out_proj, torch.nn.Identity):
            raise ValueError('a torchmil transformer layer with in_proj or '
                             'an attention out_proj has no pyg-sm '
                             'equivalent')
        _copy_module(mine.norm1, theirs.norm1)
        _copy_linear(mine.attention.qkv, theirs.att_module.qkv_nn)
        _copy_linear(mine.att_proj, theirs.att_proj)
        _copy_linear(mine.out_proj, theirs.out_proj)
        if mine.mlp is not None:  # else torchmil's norm2 is unused
            _copy_module(mine.norm2, theirs.norm2)
            _copy_linear(mine.mlp[0], theirs.mlp_module[0])
            _copy_linear(mine.mlp[3], theirs.mlp_module[3])
        mine.attention.sm = _convert_sm(theirs.att_module.sm,
                                        normalize=False, **sm_kwargs)
    _copy_module(ours.norm, encoder.norm)
    return ours


def from_torchmil(module: torch.nn.Module, normalize: bool = False,
                  in_shape: Optional[tuple] = None,
                  **sm_kwargs) -> torch.nn.Module:
    r"""The pyg-sm module that computes what a torchmil module computes.

    Converts torchmil's ``Sm``, ``SmAttentionPool``, ``SmABMIL`` and
    ``SmTransformerABMIL`` of either generation, and 1.0.x's probabilistic
    models (below), (0.1.0: ``sm_layers``,
    ``sm_pre``, ``sm_post``, ``sm_spectral_norm``; 1.0.x: ``sm_where``,
    ``spectral_norm``), trained or not, into :class:`~pyg_sm.Sm`,
    :class:`~pyg_sm.SmAttentionPool`, :class:`~pyg_sm.SmABMIL` or
    :class:`~pyg_sm.SmTransformerABMIL`: in eval mode both give the same
    outputs on the same bags, in the dense form and in the graph form of
    the same bags (:func:`~pyg_sm.dense_to_batch`). The converted module
    trains on (its parameters are copies).

    What is translated:

    - **alpha.** torchmil stores ``coef`` (a float, or a parameter that
      starts at 1) and runs its approx mode with :math:`1 / (1 + coef)`
      where the recursion of :doc:`/math` has :math:`\alpha` (so its
      approx(0.3) is pyg-sm's approx(0.7)), and its exact mode with
      :math:`\gamma = coef`. The converted Sm gets :math:`\alpha =
      1 / (1 + coef)` (approx) or :math:`coef / (1 + coef)` (exact); a
      trainable ``coef`` becomes a trainable alpha at that value. A
      ``coef`` at or below 0 has no alpha in :math:`(0, 1)`: an error.
    - **Where Sm sits**, as the code places it: 0.1.0's Sm layers
      :math:`act(Sm(H) W + b)`, ``sm_pre``, ``sm_post``; 1.0.x's early /
      mid / late / none, and no Sm where torchmil replaced it by the
      identity (``sm_alpha=0`` or ``sm_steps=0``).
    - **Spectral normalization, as torchmil's code applies it** (which
      differs from its flags: 0.1.0 always normalizes the Sm layers, and
      normalizes :math:`\mathbf{W}_1` and :math:`\mathbf{w}` when
      ``sm_pre``, whatever ``sm_spectral_norm`` says; 1.0.x normalizes
      :math:`\mathbf{W}_1`, :math:`\mathbf{w}` for early / none and
      :math:`\mathbf{w}` for mid): the same layers get pyg-sm's spectral
      normalization with torchmil's original weight and power-iteration
      vectors.
    - **The transformer**: each layer's LayerNorms, ``qkv`` weight, input
      and output projections, MLP and its own Sm; ``add_self``; the final
      LayerNorm; dropout.
    - ``feat_ext`` and ``criterion`` are deep copies; the bag head is
      ``last_layer``.
    - **The probabilistic models** (1.0.x's ``ProbSmoothAttentionPool``,
      ``ProbSmoothABMIL``, ``SmoothABMIL``, ``TransformerProbSmoothABMIL``):
      their layers keep torchmil's names (``in_mlp``, ``mu_f_nn``,
      ``log_diag_Sigma_nn``; the ``LazyLinear`` wrappers unwrapped), the
      covariance mode and sample counts carry over. In training mode with
      the same seed both draw the same samples and give the same loss
      terms; in evaluation pyg-sm draws from its seeded generator, and its
      attention is :math:`\boldsymbol{\mu}_f` where torchmil returns the
      mean of its clipped samples. Where torchmil errs, pyg-sm does not:
      ``ProbSmoothABMIL.predict(X, mask)`` passes the mask as the
      adjacency (padded instances enter the softmax), and the KL term
      divides by the padded bag size and counts padded rows.

    Args:
        module (torch.nn.Module): The torchmil module.
        normalize (bool, optional): The converted module's
            :obj:`normalize`. torchmil takes :obj:`adj` as
            :math:`\mathbf{A}` itself, and so does the converted module by
            default (graph form included); :obj:`True` makes its graph form
            normalize raw patch graphs. (default: :obj:`False`)
        in_shape (tuple, optional): The model's :obj:`in_shape` (torchmil
            does not store it). (default: :obj:`(D,)`)
        **sm_kwargs (optional): Further arguments of every
            :class:`~pyg_sm.Sm` (:obj:`tol`, :obj:`max_iter`, ...).
    """
    if _is_torchmil(module, 'Sm'):
        return _convert_sm(module, normalize=normalize, **sm_kwargs)
    if _is_torchmil(module, 'ProbSmoothAttentionPool'):
        return _convert_prob_pool(module, normalize)
    for name in PROBABILISTIC:
        if _is_torchmil(module, name):
            return _convert_probabilistic(module, name, normalize, in_shape)
    if _is_torchmil(module, 'SmAttentionPool'):
        return _convert_pool(module, normalize, **sm_kwargs)
    for name, cls in (('SmABMIL', SmABMIL),
                      ('SmTransformerABMIL', SmTransformerABMIL)):
        if not _is_torchmil(module, name):
            continue
        pool = module.pool
        feature_dim = pool.in_dim
        kwargs = {}
        if cls is SmTransformerABMIL:
            encoder = module.transformer_encoder
            kwargs = dict(transf_att_dim=encoder.layers[0].att_module.att_dim,
                          transf_n_heads=encoder.layers[0].att_module.n_heads,
                          transf_n_layers=len(encoder.layers),
                          transf_add_self=encoder.add_self)
        ours = cls((feature_dim, ), criterion=copy.deepcopy(
            module.criterion), normalize=normalize, **kwargs,
            **sm_kwargs).to(**_like(module))
        ours.feat_ext = copy.deepcopy(module.feat_ext)
        if in_shape is not None:
            ours.in_shape = tuple(in_shape)
        ours.pool = _convert_pool(pool, normalize, **sm_kwargs)
        if cls is SmTransformerABMIL:
            ours.transformer_encoder = _convert_encoder(
                module.transformer_encoder, normalize, **sm_kwargs)
        _copy_linear(ours.classifier, module.last_layer)
        return ours
    raise TypeError(f"from_torchmil converts torchmil's {', '.join(KINDS)} "
                    f"(got {type(module).__module__}."
                    f"{type(module).__name__})")


def _prob_pool_options(pool) -> dict:
    r"""The constructor options of a torchmil ``ProbSmoothAttentionPool``,
    read from its layers (its first layer is a LazyLinear)."""
    return dict(att_dim=pool.in_mlp[2].in_features // 2,
                covar_mode=pool.covar_mode,
                n_samples_train=pool.n_samples_train,
                n_samples_test=pool.n_samples_test)


def _lazy_in_features(lazy) -> int:
    layer = getattr(lazy, 'module', lazy)
    if isinstance(layer, torch.nn.modules.lazy.LazyModuleMixin) and \
            layer.has_uninitialized_params():
        raise ValueError("the torchmil module was built without in_shape and "
                         "has never run: its sizes are unknown; call it once "
                         "on a bag first")
    return layer.in_features


def _convert_prob_pool(pool, normalize: bool) -> ProbSmoothAttentionPool:
    ours = ProbSmoothAttentionPool(_lazy_in_features(pool.in_mlp[0]),
                                   normalize=normalize,
                                   **_prob_pool_options(pool))
    ours.load_state_dict(_renamed(pool.state_dict()))
    return ours.to(**_like(pool))


def _convert_probabilistic(module, name: str, normalize: bool,
                           in_shape: Optional[tuple]) -> torch.nn.Module:
    cls = PROBABILISTIC[name]
    feature_dim = _lazy_in_features(module.pool.in_mlp[0])
    options = _prob_pool_options(module.pool)
    if cls is SmoothABMIL:
        options = dict(att_dim=options['att_dim'])
    elif cls is TransformerProbSmoothABMIL:
        encoder = module.transformer_encoder
        first = encoder.layers[0]
        options = dict(pool_att_dim=options.pop('att_dim'), **options,
                       transf_att_dim=first.att_module.att_dim,
                       transf_n_layers=len(encoder.layers),
                       transf_n_heads=first.att_module.n_heads,
                       transf_use_mlp=first.use_mlp,
                       transf_add_self=encoder.add_self,
                       transf_dropout=first.att_module.dropout)
    ours = cls((feature_dim, ), criterion=copy.deepcopy(module.criterion),
               normalize=normalize, **options)
    ours.feat_ext = copy.deepcopy(module.feat_ext)
    if in_shape is not None:
        ours.in_shape = tuple(in_shape)
    ours.load_state_dict(_renamed(module.state_dict()))
    return ours.to(**_like(module))


def _renamed(state_dict: dict) -> dict:
    r"""torchmil's state-dict keys as pyg-sm names them."""
    keys = {}
    for key, value in state_dict.items():
        for theirs, mine in _RENAMED:
            key = key.replace(theirs, mine)
        keys[key] = value
    return keys


#: torchmil's module names where pyg-sm's differ (state-dict key parts).
_RENAMED = (('last_layer.', 'classifier.'),
            # torchmil 1.0.x's LazyLinear wraps a Linear.
            ('classifier.module.', 'classifier.'),
            ('in_mlp.0.module.', 'in_mlp.0.'),
            ('.att_module.qkv_nn.', '.attention.qkv.'),
            ('.att_module.sm.', '.attention.sm.'),
            ('.mlp_module.', '.mlp.'))
_SPECTRAL = {'parametrizations.weight.original': 'weight_orig',
             'parametrizations.weight.0._u': 'weight_u',
             'parametrizations.weight.0._v': 'weight_v'}


def from_torchmil_state_dict(state_dict: dict, model: str, in_shape: tuple,
                             generation: str, normalize: bool = False,
                             **kwargs) -> torch.nn.Module:
    r"""The pyg-sm model of a torchmil checkpoint, without torchmil
    installed: what :func:`from_torchmil` gives for the module, from the
    module's ``state_dict()`` and the keywords its constructor got.

    Args:
        state_dict (dict): torchmil's ``model.state_dict()``.
        model (str): torchmil's class: :obj:`"SmABMIL"`,
            :obj:`"SmTransformerABMIL"`, or 1.0.x's :obj:`"ProbSmoothABMIL"`,
            :obj:`"SmoothABMIL"`, :obj:`"TransformerProbSmoothABMIL"`.
        in_shape (tuple): The constructor's :obj:`in_shape`.
        generation (str): The torchmil that wrote it: :obj:`"0.1"` (0.1.0,
            the reference) or :obj:`"1.0"` (1.0.x); their defaults and
            keywords differ.
        normalize (bool, optional): As in :func:`from_torchmil`.
            (default: :obj:`False`)
        **kwargs (optional): The keywords torchmil's constructor got, with
            torchmil's meanings (its :obj:`sm_alpha`; :obj:`feat_ext` and
            :obj:`criterion` as modules).

    ``last_layer.*`` becomes ``classifier.*``; each trainable ``coef``
    becomes the trainable alpha of the same value and a fixed
    :obj:`sm_alpha` the alpha torchmil runs (:math:`1 - \alpha` in approx
    mode, as :func:`from_torchmil` explains); the layers that hold
    spectral-normalization weights are normalized, whatever the flags say,
    as torchmil's code does."""
    if model in PROBABILISTIC:
        if generation != '1.0':
            raise ValueError(f"torchmil {generation} has no {model}: "
                             f"'generation' must be '1.0'")
        ours = PROBABILISTIC[model](tuple(in_shape), normalize=normalize,
                                    **kwargs)
        ours.load_state_dict(_renamed(state_dict))
        return ours.eval()
    classes = {'SmABMIL': SmABMIL, 'SmTransformerABMIL': SmTransformerABMIL}
    if model not in classes:
        raise ValueError(f"'model' must be one of "
                         f"{list(classes) + list(PROBABILISTIC)} (got "
                         f"{model!r})")
    if generation not in ('0.1', '1.0'):
        raise ValueError(f"'generation' must be '0.1' (torchmil 0.1.0) or "
                         f"'1.0' (torchmil 1.0.x) (got {generation!r})")
    cls = classes[model]
    options = _pyg_sm_options(cls, generation, dict(kwargs))
    ours = cls(tuple(in_shape), normalize=normalize, **options)
    keys = _renamed(state_dict)
    # Spectral normalization where torchmil's weights have it.
    first = {name: f'pool.{name}' if name != 'mlp' else 'pool.mlp.0'
             for name in POOL_LAYERS}
    normalized = [name for name, path in first.items() if any(
        k.startswith(path + '.parametrizations') for k in keys)]
    _normalize_pool_layers(ours.pool, normalized)
    mapped = {}
    for key, value in keys.items():
        for theirs, mine in _SPECTRAL.items():
            if key.endswith(theirs):
                key = key[:-len(theirs)] + mine
        if key.endswith('.sm.sm.coef'):
            owner = key[:-len('.sm.coef')]
            sm = ours.get_submodule(owner)
            if sm.alpha_logit is None:  # zero approx steps: unused
                continue
            alpha = _alpha_of_coef(value, sm.mode)
            share = (alpha - _ALPHA_MARGIN) / (1 - 2 * _ALPHA_MARGIN)
            key, value = owner + '.alpha_logit', torch.logit(share).to(
                sm.alpha_logit)
        mapped[key] = value
    for name in [n for n in mapped if n.endswith('.weight_orig')]:
        base = name[:-len('weight_orig')]
        u, v = mapped[base + 'weight_u'], mapped[base + 'weight_v']
        sigma = torch.dot(u, torch.mv(mapped[name], v))
        mapped[base + 'weight'] = mapped[name] / sigma
    ours.load_state_dict(mapped)
    return ours.eval()


def _normalize_pool_layers(pool: SmAttentionPool, names) -> None:
    from torch.nn.utils import remove_spectral_norm
    from torch.nn.utils import spectral_norm as apply_spectral_norm

    for name, modules in pool._linear_layers().items():
        for module in modules:
            has = hasattr(module, 'weight_orig')
            if name in names and not has:
                apply_spectral_norm(module)
            elif name not in names and has:
                remove_spectral_norm(module)


def _pyg_sm_options(cls, generation: str, kwargs: dict) -> dict:
    r"""pyg-sm's constructor keywords for torchmil's: its alpha convention,
    1.0.x's defaults (Sm early), and 1.0.x's identity where alpha or the
    steps are 0."""
    prefix = 'pool_' if cls is SmTransformerABMIL else ''
    places = [(prefix, prefix + 'sm_mode')]
    if cls is SmTransformerABMIL:
        places.append(('transf_', 'transf_sm_mode'))
    for part, mode_key in places:
        alpha_key, steps_key = part + 'sm_alpha', part + 'sm_steps'
        alpha = kwargs.get(alpha_key, 'trainable')
        mode = kwargs.get(mode_key, 'approx')
        identity = generation == '1.0' and (
            alpha == 0 or kwargs.get(steps_key, 10) == 0)
        if identity and part == prefix:
            kwargs[prefix + 'sm_where'] = 'none'
            kwargs.pop(alpha_key, None)
        elif identity:  # a transformer layer's Sm: zero steps, the identity
            kwargs.update({alpha_key: 0.5, steps_key: 0, mode_key: 'approx'})
        elif alpha != 'trainable':
            value = float(alpha)
            kwargs[alpha_key] = 1 - value if mode == 'approx' else value
    if generation == '1.0':
        kwargs.setdefault(prefix + 'sm_where', 'early')
    return kwargs
