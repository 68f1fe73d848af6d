"""Plain numpy (float64, loops) versions of each loss, written from the papers' formulas.

They share no code with tfdml: the tests compare tfdml's values and gradients with these.
"""

import numpy as np


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _masks(labels, i):
    n = len(labels)
    pos = (labels == labels[i]) & (np.arange(n) != i)
    return pos, labels != labels[i]


def _mean_nonzero(v):
    v = np.asarray(v, dtype=float)
    return v[v > 0].mean() if (v > 0).any() else 0.0


def contrastive_c2(emb, labels, pos_margin=0.0, neg_margin=0.5):
    """Euclidean distance; each term averaged over its non-zero entries."""
    pos_terms, neg_terms = [], []
    for i in range(len(emb)):
        pos, neg = _masks(labels, i)
        d = np.linalg.norm(emb[i] - emb, axis=1)
        pos_terms += list(np.maximum(d[pos] - pos_margin, 0))
        neg_terms += list(np.maximum(neg_margin - d[neg], 0))
    return _mean_nonzero(pos_terms) + _mean_nonzero(neg_terms)


def contrastive_c1(emb, labels, margin=0.5):
    """XBM's form: per anchor sum_pos (1 - cos) + sum_neg [cos - m]_+, averaged over anchors."""
    x = unit(emb)
    total = 0.0
    for i in range(len(x)):
        pos, neg = _masks(labels, i)
        cos = x @ x[i]
        total += (1 - cos[pos]).sum() + np.maximum(cos[neg] - margin, 0).sum()
    return total / len(x)


def triplet(emb, labels, margin, mining="all"):
    """[d_ap - d_an + m]_+ with Euclidean d, averaged over non-zero terms."""
    terms = []
    for a in range(len(emb)):
        pos, neg = _masks(labels, a)
        d = np.linalg.norm(emb[a] - emb, axis=1)
        if mining == "hard":
            if pos.any() and neg.any():
                terms.append(max(d[pos].max() - d[neg].min() + margin, 0))
            continue
        for p in np.flatnonzero(pos):
            for n in np.flatnonzero(neg):
                t = d[p] - d[n] + margin
                if mining == "semihard" and not (d[p] < d[n] < d[p] + margin):
                    continue
                terms.append(max(t, 0))
    return _mean_nonzero(terms)


def multi_similarity(emb, labels, alpha=2.0, beta=50.0, base=0.5, eps=None):
    x = unit(emb)
    total = 0.0
    for i in range(len(x)):
        pos, neg = _masks(labels, i)
        s = x @ x[i]
        if eps is not None:
            min_pos = s[pos].min() if pos.any() else np.inf
            max_neg = s[neg].max() if neg.any() else -np.inf
            pos, neg = pos & (s - eps < max_neg), neg & (s + eps > min_pos)
        total += np.log1p(np.exp(-alpha * (s[pos] - base)).sum()) / alpha
        total += np.log1p(np.exp(beta * (s[neg] - base)).sum()) / beta
    return total / len(x)


def circle(emb, labels, gamma=80.0, margin=0.4):
    """Sun et al. 2020 in keras.losses.Circle's form: per anchor softplus(lse_pos + lse_neg) on cosine
    similarities clipped at 1, averaged over the anchors whose term is non-zero."""
    x = unit(emb)
    terms = []
    for i in range(len(x)):
        pos, neg = _masks(labels, i)
        if not pos.any() or not neg.any():
            continue
        s = np.minimum(x @ x[i], 1.0)
        z_pos = -gamma * np.maximum(1 + margin - s[pos], 0) * (s[pos] - (1 - margin))
        z_neg = gamma * np.maximum(s[neg] + margin, 0) * (s[neg] - margin)
        lse = [z.max() + np.log(np.exp(z - z.max()).sum()) for z in (z_pos, z_neg)]
        terms.append(np.logaddexp(0.0, lse[0] + lse[1]))
    return _mean_nonzero(terms)


def proxy_anchor(emb, labels, proxies, alpha=32.0, delta=0.1, num_classes=None):
    num_classes = num_classes or len(proxies)
    sim = unit(emb) @ unit(proxies).T
    proxy_class = np.arange(len(proxies)) % num_classes
    pos_terms, neg_terms = [], []
    for p in range(len(proxies)):
        pos = labels == proxy_class[p]
        if pos.any():
            pos_terms.append(np.log1p(np.exp(-alpha * (sim[pos, p] - delta)).sum()))
        neg_terms.append(np.log1p(np.exp(alpha * (sim[~pos, p] + delta)).sum()))
    return np.mean(pos_terms) + np.mean(neg_terms)


def _proxy_softmax(logits, labels, num_classes):
    """-log(sum of the own class's softmax probabilities over all proxies), averaged."""
    proxy_class = np.arange(logits.shape[1]) % num_classes
    total = 0.0
    for i in range(len(logits)):
        z = logits[i] - logits[i].max()
        p = np.exp(z) / np.exp(z).sum()
        total -= np.log(p[proxy_class == labels[i]].sum())
    return total / len(logits)


def normalized_softmax(emb, labels, proxies, temperature=0.05, num_classes=None):
    return _proxy_softmax(unit(emb) @ unit(proxies).T / temperature, labels, num_classes or len(proxies))


def proxy_nca_pp(emb, labels, proxies, temperature=0.11, num_classes=None):
    d2 = ((unit(emb)[:, None] - unit(proxies)[None]) ** 2).sum(-1)
    return _proxy_softmax(-d2 / temperature, labels, num_classes or len(proxies))


def arcface(emb, labels, proxies, scale=64.0, margin=0.5):
    cos = np.clip(unit(emb) @ unit(proxies).T, -1, 1)
    theta = np.arccos(cos)
    logits = scale * cos
    for i, y in enumerate(labels):
        logits[i, y] = scale * (np.cos(theta[i, y] + margin) if theta[i, y] + margin < np.pi
                                else cos[i, y] - margin * np.sin(margin))
    return _proxy_softmax(logits, labels, len(proxies))


def soft_triple(emb, labels, proxies, num_classes, k, scale=20.0, gamma=0.1, tau=0.2, margin=0.01):
    x, w = unit(emb), unit(proxies)
    centres = [[w[j * num_classes + c] for j in range(k)] for c in range(num_classes)]
    total = 0.0
    for i in range(len(x)):
        s_class = []
        for c in range(num_classes):
            s = np.array([x[i] @ wc for wc in centres[c]])
            p = np.exp(s / gamma - (s / gamma).max())
            s_class.append((p / p.sum() * s).sum())
        z = scale * (np.array(s_class) - margin * (np.arange(num_classes) == labels[i]))
        total += np.log(np.exp(z - z.max()).sum()) + z.max() - z[labels[i]]
    reg = 0.0
    if k > 1:
        for c in range(num_classes):
            for t in range(k):
                for s in range(t + 1, k):
                    reg += np.linalg.norm(centres[c][t] - centres[c][s])
        reg /= num_classes * k * (k - 1)
    return total / len(x) + tau * reg


def numeric_gradient(fn, x, h=1e-5):
    """Central differences of `fn` at every entry of `x` (float64)."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += h
        down[idx] -= h
        grad[idx] = (fn(up) - fn(down)) / (2 * h)
    return grad
