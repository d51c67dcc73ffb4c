"""VAERR's ten ``--loss_type`` losses (VAERR), on VAERR's output layout, as pure functions.

VAERR (``Instassa/VAERR_SelfSupervisedVE``, ``loss/compute_loss_CCE.py``) trains on a network output with, per
dimension (arousal first, then valence), ``bins`` softmax probabilities of the discretised value followed by the
value itself (``sigmoid * 2 - 1``); targets have the same layout (one-hot bin, then the value). Here both are
``[N, 2, bins + 1]`` tensors (``N`` frames; ``[..., 0, :]`` arousal, ``[..., 1, :]`` valence), which flattened
is VAERR's ``[N, 2 * (bins + 1)]``. ``CCC`` is VAERR's CCC *loss* (``1 - CCC``, :func:`vaerr_ccc_loss`); ``CE``
is ``nn.CrossEntropyLoss`` applied to the network's bin outputs against the target's argmax bin (VAERR applies
it to the softmax probabilities its network returns, so the bins go through a second softmax: kept, since that
is the loss VAERR optimises); ``MSE`` is on the values.

===  ======================  ==============================================================================
 #   name                    loss
===  ======================  ==============================================================================
 1   ``mse``                 ``MSE`` over both values
 2   ``ccc``                 ``CCC_a + CCC_v``
 3   ``ce``                  ``CE_a + CE_v``
 4   ``bce``                 ``BCE(bins_a) + BCE(bins_v)`` (``nn.BCELoss`` on the bin probabilities)
 5   ``ccc+ce``              ``sum_d 0.5 CCC_d + 0.5 CE_d``
 6   ``ccc+ce+mse``          ``sum_d 0.5 CCC_d + 0.25 CE_d + 0.25 MSE_d``
 7   ``arousal:ccc+ce``      ``CCC_a + 0.5 CE_a + CCC_v``
 8   ``arousal:ccc+ce+mse``  ``CCC_a + 0.5 CE_a + 0.5 MSE_a + CCC_v``
 9   ``ccc+ncce``            ``CCC_a + CCC_v + (nCCE_a + nCCE_v) / 10``
10   ``ccc+ncce+mse``        loss 9 ``+ MSE_a + MSE_v``
===  ======================  ==============================================================================

``nCCE_d`` is the normalised-cost cross entropy of Albadawy et al. 2018 as VAERR computes it:
``mean_n(1 + |k(y_n) - k(p_n)|) * CE'_d + 0.01 * sum_params ||w||_2``, where ``k`` assigns each target bin vector
``y_n`` and predicted bin vector ``p_n`` to one of ``bins`` k-means clusters (Lloyd, 5 iterations, centres carried
over from batch to batch in a :class:`KMeansState`) and ``CE'_d = mean_n -sum_k y_nk log softmax(p_n)_k``.

Where VAERR's code cannot run as written, these functions follow its stated meaning (``--loss-type`` help
``1=MSE, 2=CCC, 3=Cross-Entropy, 4=BCE, 5=CCC+CE, ...``) on the layout above: its losses 1–2 assume a 2-output
network and 3–4 slice 3 columns per dimension (``0:3``, ``3:6``), which fit neither its 20-bin model nor each
other; loss 2 calls ``nn.ConcordanceCorCoeffLoss`` (not a torch class) and loss 9 is unreachable (its branch
tests ``lossType > 9``). An empty k-means cluster keeps its previous centre (VAERR divides by zero there).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from emovid.errors import ConfigError

#: ``--loss_type N`` → name, in VAERR's numbering.
VAERR_LOSS_NAMES: dict[int, str] = {
    1: "mse",
    2: "ccc",
    3: "ce",
    4: "bce",
    5: "ccc+ce",
    6: "ccc+ce+mse",
    7: "arousal:ccc+ce",
    8: "arousal:ccc+ce+mse",
    9: "ccc+ncce",
    10: "ccc+ncce+mse",
}
#: the losses that need the bins + value head (1 and 2 use the values only)
BINNED_LOSSES = frozenset(VAERR_LOSS_NAMES[k] for k in range(3, 11))
AROUSAL, VALENCE = 0, 1
L2_LAMBDA = 0.01  # VAERR's l2_lambda in the nCCE losses


def vaerr_loss_name(loss: str | int) -> str:
    """VAERR's number (``5``, ``"5"``) or a name (``"ccc+ce"``) → the name; other strings are returned as they are."""
    s = str(loss).strip()
    if s.isdigit():
        n = int(s)
        if n not in VAERR_LOSS_NAMES:
            raise ConfigError(f"--loss_type {n}: VAERR's loss types are 1..10 ({_table()})")
        return VAERR_LOSS_NAMES[n]
    return s.lower()


def _table() -> str:
    return ", ".join(f"{k}={v}" for k, v in VAERR_LOSS_NAMES.items())


def vaerr_ccc_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """VAERR's ``ConcordanceCorCoeffLoss`` (``loss/cccLoss.py``): ``1 - CCC`` over all elements, as written there.

    ``CCC = 2 r s_t s_p / (var_t + var_p + (m_t - m_p)^2)`` with Pearson ``r``, *unbiased* ``var``/``std`` and
    ``eps`` added to each mean, variance and standard deviation.
    """
    p, t = pred.reshape(-1), target.reshape(-1)
    mean_t, mean_p = t.mean() + eps, p.mean() + eps
    var_t, var_p = t.var() + eps, p.var() + eps
    vp, vt = p - mean_p, t - mean_t
    cor = (vp * vt).sum() / (torch.sqrt((vp**2).sum()) * torch.sqrt((vt**2).sum()))
    sd_t, sd_p = t.std() + eps, p.std() + eps
    return 1 - 2 * cor * sd_t * sd_p / (var_t + var_p + (mean_t - mean_p) ** 2)


# ---- k-means and the normalised-cost CE (losses 9, 10) ----------------------------------------------------------


@dataclass
class KMeansState:
    """The k-means centres VAERR carries from batch to batch (``args.strpoints_ar`` / ``args.strpoints_val``)."""

    centres: dict[int, torch.Tensor] = field(default_factory=dict)


def kmeans(x: torch.Tensor, k: int, n_iter: int = 5, centres: torch.Tensor | None = None):
    """VAERR's ``loss/Kmeans.py`` (Lloyd's algorithm, Euclidean) on ``x [N, D]``.

    Starts from ``centres`` or, without them, from the first ``k`` rows of ``x`` (VAERR: the first ``k`` frames of
    the batch's first sequence; fewer rows are repeated). Each iteration assigns every row to its nearest centre,
    then moves the centres to their clusters' means.

    Returns:
        ``(labels [N], centres [k, D])``: the assignment of the last iteration (made before its centre update, as
        in VAERR) and the updated centres.
    """
    x = x.detach().float()
    if centres is None:
        c = x[:k].clone()
        if len(c) < k:
            c = torch.cat([c, c[-1:].expand(k - len(c), -1)])
    else:
        c = centres.detach().to(x).clone()
    labels = torch.zeros(len(x), dtype=torch.long, device=x.device)
    for _ in range(n_iter):
        labels = torch.cdist(x, c).argmin(1)
        sums = torch.zeros_like(c).index_add_(0, labels, x)
        count = torch.bincount(labels, minlength=k).to(c)[:, None]
        c = torch.where(count > 0, sums / count.clamp_min(1), c)
    return labels, c


def normalised_cost(y: torch.Tensor, p: torch.Tensor, k: int, state: KMeansState, dim: int) -> torch.Tensor:
    """``1 + |k(y_n) - k(p_n)|`` per row: k-means on the targets, continued on the predictions (VAERR's
    ``norm_cost``)."""
    label_y, c = kmeans(y, k, centres=state.centres.get(dim))
    label_p, c = kmeans(p, k, centres=c)
    state.centres[dim] = c
    return 1 + (label_y - label_p).abs().to(p.dtype)


def soft_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """VAERR's ``modified_CE``: ``mean_n -sum_k labels_nk log softmax(logits_n)_k``."""
    return (-(labels * torch.log_softmax(logits, -1)).sum(-1)).mean()


def l2_penalty(params: Iterable[torch.Tensor], lam: float = L2_LAMBDA) -> torch.Tensor:
    """``lam * sum ||w||_2`` over the parameters (norms, not squared norms, as in VAERR)."""
    norms = [p.norm() for p in params]
    return lam * torch.stack(norms).sum() if norms else torch.zeros(())


# ---- the ten losses --------------------------------------------------------------------------------------------


def _check(pred: torch.Tensor, target: torch.Tensor) -> int:
    if pred.shape != target.shape or pred.ndim < 2 or pred.shape[-2] != 2:
        raise ValueError(
            f"VAERR losses want pred and target [N, 2, bins+1]; got {tuple(pred.shape)}, {tuple(target.shape)}"
        )
    return pred.shape[-1] - 1


def vaerr_loss(
    name: str | int,
    pred: torch.Tensor,
    target: torch.Tensor,
    state: KMeansState | None = None,
    params: Iterable[torch.Tensor] | None = None,
) -> torch.Tensor:
    """VAERR loss ``name`` (or its number) of ``pred`` and ``target`` ``[..., 2, bins + 1]``.

    Args:
        state: k-means centres of the nCCE losses (9, 10), updated in place; a fresh one when ``None``.
        params: the model's parameters, for the nCCE losses' L2 term.
    """
    name = vaerr_loss_name(name)
    if name not in VAERR_LOSS_NAMES.values():
        raise ConfigError(f"unknown VAERR loss {name!r}; choose one of {_table()}")
    bins = _check(pred, target)
    pred = pred.reshape(-1, 2, bins + 1)
    target = target.reshape(-1, 2, bins + 1).to(pred.dtype)
    val_p, val_t = pred[..., bins], target[..., bins]  # [N, 2]
    if name == "mse":
        return F.mse_loss(val_p, val_t)
    ccc = [vaerr_ccc_loss(val_p[:, d], val_t[:, d]) for d in (AROUSAL, VALENCE)]
    if name == "ccc":
        return ccc[0] + ccc[1]
    mse = [F.mse_loss(val_p[:, d], val_t[:, d]) for d in (AROUSAL, VALENCE)]
    bins_p, bins_t = pred[..., :bins], target[..., :bins]
    if name == "bce":
        return sum(F.binary_cross_entropy(bins_p[:, d], bins_t[:, d]) for d in (AROUSAL, VALENCE))
    if name in ("ccc+ncce", "ccc+ncce+mse"):
        state = state if state is not None else KMeansState()
        l2 = l2_penalty(params or []).to(pred)
        ncce = []
        for d in (AROUSAL, VALENCE):
            cost = normalised_cost(bins_t[:, d], bins_p[:, d], bins, state, d)
            ncce.append((cost * soft_cross_entropy(bins_p[:, d], bins_t[:, d])).mean() + l2)
        loss = ccc[0] + ccc[1] + ncce[0] / 10 + ncce[1] / 10
        return loss + mse[0] + mse[1] if name.endswith("+mse") else loss
    # VAERR: argmax of the one-hot target cast to long (a soft target would truncate to 0 everywhere)
    ce = [F.cross_entropy(bins_p[:, d], bins_t[:, d].long().argmax(-1)) for d in (AROUSAL, VALENCE)]
    if name == "ce":
        return ce[0] + ce[1]
    if name == "ccc+ce":
        return sum(0.5 * ccc[d] + 0.5 * ce[d] for d in (0, 1))
    if name == "ccc+ce+mse":
        return sum(0.5 * ccc[d] + 0.25 * ce[d] + 0.25 * mse[d] for d in (0, 1))
    if name == "arousal:ccc+ce":
        return ccc[0] + 0.5 * ce[0] + ccc[1]
    return ccc[0] + 0.5 * ce[0] + 0.5 * mse[0] + ccc[1]  # arousal:ccc+ce+mse


def vaerr_targets(values: torch.Tensor, bins: int, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    """VAERR's target layout ``[..., 2, bins + 1]`` (arousal, valence) from ``[..., 2]`` values in emovid's
    (valence, arousal) order: the one-hot of the equal-width bin of ``[low, high]`` and the value."""
    from emovid.losses import value_bins

    av = values[..., [1, 0]]
    onehot = F.one_hot(value_bins(av, bins, low, high), bins).to(values.dtype)
    return torch.cat([onehot, av[..., None]], -1)
