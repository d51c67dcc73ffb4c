"""Loss functions of the seeds, as pure functions on tensors.

* :func:`ranknet_loss` — RankNet-X3D / V2V pairs: logistic loss on score differences (Burges et al., 2005).
* :func:`listnet_loss` — V2V lists: cross entropy of top-one probabilities (Cao et al., 2007).
* :func:`plackett_luce_loss` — V2V lists: negative log-likelihood of the full order (ListMLE, Xia et al., 2008).
* :func:`ccc` / :func:`ccc_loss` — concordance correlation (Lin, 1989) for valence/arousal and personality.
* :func:`balanced_kl_div` — the EmoNeXt recipe's class-balanced KL divergence to a target distribution.
* :func:`info_nce` — the CLIP-ViP recipe's symmetric contrastive loss (CLIP, Radford et al., 2021).
* :func:`binned_cross_entropy` — regression as classification over value bins (emovid's ``bins`` loss).

VAERR's ten ``--loss_type`` losses, on its bins + value output layout, are in :mod:`emovid.losses_vaerr`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pair_targets(score_a: torch.Tensor, score_b: torch.Tensor, tol: float = 0.0) -> torch.Tensor:
    """RankNet-X3D's pair label: 1 if A is more intense, 0 if B is, 0.5 if they tie within ``tol``.

    The rule is :func:`emovid.data.pairs.pair_targets_array`'s (float64 differences, rounding slack), so in-batch
    pairs are labelled exactly as sampled and validation pairs; pass float64 scores for that to hold on a grid
    such as 0.1 steps. Returns float32 targets on the scores' device.
    """
    from emovid.data.pairs import pair_targets_array

    # Labels are a handful of numbers: the CPU round trip costs nothing, and float64 is not on every device.
    a = score_a.detach().cpu().double().numpy()
    b = score_b.detach().cpu().double().numpy()
    return torch.from_numpy(pair_targets_array(a, b, tol)).to(device=score_a.device, dtype=torch.float32)


def ranknet_loss(s_a: torch.Tensor, s_b: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``BCEWithLogits(s_a - s_b, t)``: ``P(A ranks above B) = sigmoid(s_a - s_b)`` against ``t`` in {0, 0.5, 1}."""
    return F.binary_cross_entropy_with_logits(s_a - s_b, target.to(s_a.dtype))


def pairwise_accuracy(s_a: torch.Tensor, s_b: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fraction of decided pairs (``t != 0.5``) ordered correctly; equal scores earn half credit."""
    decided = target != 0.5
    if not bool(decided.any()):
        return torch.tensor(float("nan"))
    sign = torch.sign(s_a - s_b)
    want = torch.where(target > 0.5, 1.0, -1.0).to(sign)
    credit = torch.where(sign == 0, torch.full_like(sign, 0.5), (sign == want).to(sign))
    return credit[decided].float().mean()


def _masked(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return scores
    return scores.masked_fill(~mask.bool(), float("-inf"))


def listnet_loss(scores: torch.Tensor, relevance: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """ListNet top-one loss: ``-sum_j softmax(relevance)_j * log softmax(scores)_j``, averaged over lists.

    Args:
        scores: ``[B, L]`` model scores.
        relevance: ``[B, L]`` graded relevance (higher = more preferred), e.g. the position in a V2V list.
        mask: ``[B, L]`` True for real items of lists shorter than ``L``.
    """
    p_true = torch.softmax(_masked(relevance.to(scores.dtype), mask), dim=-1)
    log_p = torch.log_softmax(_masked(scores, mask), dim=-1)
    log_p = torch.where(p_true > 0, log_p, torch.zeros_like(log_p))  # padded items: 0 * -inf -> 0
    return -(p_true * log_p).sum(-1).mean()


def plackett_luce_loss(scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Negative log-likelihood of the observed order under Plackett–Luce.

    ``scores[:, 0]`` is the most preferred item, ``scores[:, 1]`` the next, and so on:
    ``-log P(order) = -sum_i [ s_i - logsumexp_{j >= i} s_j ]`` over real items (``mask``), averaged over lists.
    """
    s = _masked(scores, mask)
    # logsumexp over the suffix j >= i: flip, cumulative logsumexp, flip back.
    suffix = torch.logcumsumexp(s.flip(-1), dim=-1).flip(-1)
    terms = s - suffix
    if mask is not None:
        terms = torch.where(mask.bool(), terms, torch.zeros_like(terms))
    return -terms.sum(-1).mean()


def ccc(pred: torch.Tensor, target: torch.Tensor, dim: int = 0, eps: float = 1e-8) -> torch.Tensor:
    """Concordance correlation ``2 cov / (var_p + var_t + (mean_p - mean_t)^2)`` along ``dim`` (population moments)."""
    mp, mt = pred.mean(dim), target.mean(dim)
    vp = pred.var(dim, unbiased=False)
    vt = target.var(dim, unbiased=False)
    cov = ((pred - pred.mean(dim, keepdim=True)) * (target - target.mean(dim, keepdim=True))).mean(dim)
    return 2 * cov / (vp + vt + (mp - mt) ** 2 + eps)


def ccc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - CCC`` averaged over output dimensions (``pred``, ``target``: ``[N]`` or ``[N, D]``)."""
    if pred.ndim > 2:
        pred, target = pred.reshape(-1, pred.shape[-1]), target.reshape(-1, target.shape[-1])
    return (1 - ccc(pred, target, dim=0)).mean()


def balanced_kl_div(
    log_probs: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None, eps: float = 1e-12
) -> torch.Tensor:
    """Class-weighted ``KL(target || pred)``: ``mean_b sum_c w_c t_bc (log t_bc - log p_bc)``.

    With ``class_weights=None`` this equals ``nn.KLDivLoss(reduction="batchmean")``. The EmoNeXt recipe balances
    CMU-MOSEI's
    skew towards happy/neutral with weights inversely proportional to class frequency
    (see :func:`inverse_frequency_weights`).
    """
    t = target.to(log_probs.dtype)
    kl = torch.where(t > 0, t * (torch.log(t.clamp_min(eps)) - log_probs), torch.zeros_like(t))
    if class_weights is not None:
        kl = kl * class_weights.to(kl)
    return kl.sum(-1).mean()


def inverse_frequency_weights(targets: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Weights ``w_c ∝ 1 / mass_c`` of each class in ``[N, C]`` target distributions, normalised to mean 1."""
    mass = targets.float().sum(0) + eps
    w = 1.0 / mass
    return w * (len(w) / w.sum())


def info_nce(
    a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor | float = 1.0, groups: torch.Tensor | None = None
) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of matched pairs ``(a_i, b_i)``.

    ``logits = logit_scale * a @ b.T`` (pass L2-normalised embeddings and ``exp`` of CLIP's learnable
    log-temperature); the loss is the mean of the row-wise and column-wise cross entropies with the diagonal as
    the positives.

    Args:
        groups: ``[B]`` ids; pairs ``i != j`` of one group (two captions of the same video) are left out of each
            other's negatives (their logits are masked), since pushing a caption away from its own video's other
            clip, or a video away from its other caption, would train against the labels.
    """
    logits = logit_scale * a @ b.t()
    labels = torch.arange(len(a), device=a.device)
    if groups is not None:
        groups = torch.as_tensor(groups, device=logits.device)
        same = (groups[:, None] == groups[None, :]) & ~torch.eye(len(a), dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(same, float("-inf"))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


def value_bins(values: torch.Tensor, num_bins: int, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    """Index of the equal-width bin of ``[low, high]`` each value falls in."""
    pos = (values.clamp(low, high) - low) / (high - low) * num_bins
    return pos.long().clamp(0, num_bins - 1)


def bin_centers(num_bins: int, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    width = (high - low) / num_bins
    return low + width * (torch.arange(num_bins, dtype=torch.float32) + 0.5)


def binned_cross_entropy(
    logits: torch.Tensor, values: torch.Tensor, low: float = -1.0, high: float = 1.0
) -> torch.Tensor:
    """Cross entropy of ``logits [..., num_bins]`` against the bin of each continuous target value."""
    num_bins = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, num_bins), value_bins(values, num_bins, low, high).reshape(-1))


def expected_value(logits: torch.Tensor, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    """Turn bin logits back into a value: the softmax-weighted mean of the bin centres."""
    centers = bin_centers(logits.shape[-1], low, high).to(logits)
    return (torch.softmax(logits, -1) * centers).sum(-1)
