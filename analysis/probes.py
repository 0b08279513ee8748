"""Probes on frozen embeddings: L2 logistic (C by inner CV), ridge, kNN.

All three standardise the features on the training data they are fitted on (so, in a
cross-validation, within the fold) and are scikit-learn estimators.

:class:`LinearProbe` minimises, as :class:`sklearn.linear_model.LogisticRegression`,

    C * sum_i w_i * log(1 + exp(-s_i (x_i . beta + b))) + ||beta||^2 / 2

with class-balanced weights ``w_i = n / (2 n_class(i))`` (computed once on the whole
training set, as LogisticRegressionCV does) and an unpenalised intercept; C is picked
from ``Cs`` by stratified inner CV on the pooled class-weighted validation log-loss
(see :class:`LinearProbe` for the rule and why), then the model is refitted on the
whole training set.

Why it is fast: embeddings are wide (d = 2048) and cohorts small (n ~ 300). The L2
solution lies in the span of the training rows, so the problem is solved exactly in
``r = rank <= n`` coordinates from the eigen-decomposition of the Gram matrix
``K = Z Z^T`` of the standardised rows: ``F = Q sqrt(Lambda)`` (training rows) and
``K_new Q / sqrt(Lambda)`` (any other row), with ``||beta|| = ||beta_r||`` preserved.
Inner-CV folds reuse the same K. Each C is solved by Newton's method with a backtracking
line search, warm-started along the C path. When ``d <= n`` the standardised features
are used directly.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(60, 100)); y = (X[:, 0] + 0.5 * rng.normal(size=60)) > 0
>>> probe = LinearProbe().fit(X, y)
>>> probe.predict_proba(X).shape
(60, 2)
"""

from __future__ import annotations

import numpy as np
from scipy import special
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from neurofeat.analysis.metrics import batched_auc

__all__ = ["DEFAULT_CS", "DECADE_CS", "SCORINGS", "LinearProbe", "RidgeProbe", "KNNProbe", "standardise"]

#: Inner-CV criteria of :class:`LinearProbe` (the first is the default).
SCORINGS: tuple[str, ...] = ("log_loss", "roc_auc")

#: Relative tolerance under which two inner-CV log-losses count as a tie.
_TIE_RTOL = 1e-4

#: Default grid of inverse regularisation strengths (13 values, half decades 1e-5 ... 10).
DEFAULT_CS: tuple[float, ...] = tuple(float(c) for c in np.logspace(-5, 1, 13))

#: The grid before issue 13 (7 values, decades 1e-5 ... 10), for reproduction.
DECADE_CS: tuple[float, ...] = tuple(float(c) for c in np.logspace(-5, 1, 7))


def standardise(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and scales (population std; constant columns get scale 1).

    Parameters
    ----------
    X : ndarray, shape (n, d)

    Returns
    -------
    mean, scale : ndarrays, shape (d,)
    """
    mean = X.mean(axis=0, dtype=np.float64)
    scale = X.std(axis=0, dtype=np.float64)
    scale = np.where(scale > 1e-12 * np.maximum(1.0, np.abs(mean)), scale, 1.0)
    return mean, scale


def _objective(F, t, sw, C, beta, b):
    eta = F @ beta + b
    return C * np.sum(sw * (np.logaddexp(0.0, eta) - t * eta)) + 0.5 * beta @ beta


def _newton_logistic(F: np.ndarray, t: np.ndarray, sw: np.ndarray, C: float,
                     beta: np.ndarray, b: float, tol: float, max_iter: int
                     ) -> tuple[np.ndarray, float, int]:
    """Minimise C sum sw (log(1+e^eta) - t eta) + |beta|^2/2, eta = F beta + b."""
    r = F.shape[1]
    obj = _objective(F, t, sw, C, beta, b)
    for it in range(1, max_iter + 1):
        eta = F @ beta + b
        p = special.expit(eta)
        resid = C * sw * (p - t)
        g = np.empty(r + 1)
        g[:r] = F.T @ resid + beta
        g[r] = resid.sum()
        w = C * sw * p * (1.0 - p)
        H = np.empty((r + 1, r + 1))
        H[:r, :r] = (F.T * w) @ F
        H[np.arange(r), np.arange(r)] += 1.0
        H[:r, r] = H[r, :r] = F.T @ w
        H[r, r] = w.sum() + 1e-12
        try:
            step = np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(H, g, rcond=None)[0]
        decrement = float(g @ step)
        if decrement / 2.0 <= tol * max(1.0, abs(obj)):
            return beta, b, it
        s = 1.0
        while True:
            new_beta = beta - s * step[:r]
            new_b = b - s * step[r]
            new_obj = _objective(F, t, sw, C, new_beta, new_b)
            if new_obj <= obj - 1e-4 * s * decrement or s < 1e-10:
                break
            s *= 0.5
        beta, b, obj = new_beta, new_b, new_obj
    return beta, b, max_iter


def _dual_logistic(K: np.ndarray, t: np.ndarray, sw: np.ndarray, C: float,
                   alpha: np.ndarray, b: float, tol: float, max_iter: int
                   ) -> tuple[np.ndarray, float, int]:
    """Same objective as :func:`_newton_logistic` with ``beta = Z^T alpha``, ``K = Z Z^T``.

    Each Newton (IRLS) step solves the weighted-ridge KKT system
    ``[K + c^-1, 1; 1^T, 0] [alpha; b] = [z; 0]`` (``c = C sw p (1 - p)``, ``z`` the
    working response) through the well-conditioned ``I + D K D`` with ``D = sqrt(c)``;
    the step is damped by a backtracking line search on the objective.
    """
    from scipy.linalg import cho_factor, cho_solve

    K_alpha = K @ alpha
    eta = K_alpha + b
    obj = C * np.sum(sw * (np.logaddexp(0.0, eta) - t * eta)) + 0.5 * alpha @ K_alpha
    n = t.size
    for it in range(1, max_iter + 1):
        p = special.expit(eta)
        v = np.maximum(p * (1.0 - p), 1e-14)
        c = C * sw * v
        z = eta - (p - t) / v
        d = np.sqrt(c)
        G = (d[:, None] * K) * d[None, :]
        G[np.arange(n), np.arange(n)] += 1.0
        factor = cho_factor(G, lower=True, check_finite=False)
        solved = cho_solve(factor, np.column_stack([d * z, d]), check_finite=False)
        b_new = float(d @ solved[:, 0]) / float(d @ solved[:, 1])
        alpha_new = d * (solved[:, 0] - b_new * solved[:, 1])
        d_alpha = alpha_new - alpha
        K_d = K @ d_alpha
        d_eta = K_d + (b_new - b)
        s = 1.0
        while True:
            eta_s = eta + s * d_eta
            K_alpha_s = K_alpha + s * K_d
            alpha_s = alpha + s * d_alpha
            obj_s = (C * np.sum(sw * (np.logaddexp(0.0, eta_s) - t * eta_s))
                     + 0.5 * alpha_s @ K_alpha_s)
            if obj_s <= obj or s < 1e-10:
                break
            s *= 0.5
        gain = obj - obj_s
        alpha, b, eta, K_alpha = alpha_s, b + s * (b_new - b), eta_s, K_alpha_s
        obj = obj_s
        if gain <= tol * max(1.0, abs(obj)):
            return alpha, b, it
    return alpha, b, max_iter


class LinearProbe(ClassifierMixin, BaseEstimator):
    """Standardise + class-balanced L2 logistic regression with C chosen by inner CV.

    Selection rule (issue 13)
    -------------------------
    *Criterion.* ``scoring='log_loss'`` (default): for each C of the grid, the
    class-weighted log-loss of the inner validation rows, pooled over the inner folds
    (``sum_i w_i loss_i / sum_i w_i`` with the training weights ``w``); the C with the
    smallest loss wins.  ``cv_scores_`` holds minus that loss (higher is better).
    Why not the mean validation AUC (``scoring='roc_auc'``, the rule before issue 13
    and sklearn's ``LogisticRegressionCV(scoring='roc_auc')``): AUC ignores the scale
    of the scores, and as C -> 0 the L2 solution shrinks towards a fixed direction (the
    class-weighted mean difference of the standardised features), so every small C
    ranks the patients alike and ties on AUC.  That direction ignores the correlation
    between features; with a few correlated features (the synthetic cohort's latent
    traits) it is clearly worse than the fitted one, yet on inner folds of 5 or 6
    positives it tied or won by noise, and ties went to the smallest C: C = 1e-5 in
    45 % of the folds (traits + tumour centre, n = 240, 8 markers, 6 cohorts; IDH1 in
    4 of 10 folds), CDKN2A AUC 0.53 where ``LogisticRegression(C=1)`` reaches 0.59.
    The log-loss is a proper scoring rule and is not flat there: a heavily shrunk
    model predicts ~0.5 for everyone and pays for it, so the small-C end wins only when
    the inner folds find no usable signal (10 such cohorts, one 5-fold CV each: 18 of
    400 folds, all for the weakest markers TP53, CDKN2A and TERT).  Pooling the validation rows (rather than
    averaging per-fold scores) uses every positive once and keeps small folds from
    dominating.
    *Grid.* ``DEFAULT_CS``: 13 half-decade steps from 1e-5 to 10.  With standardised
    features this spans a ridge penalty per training row of ``1 / (C n)`` from far
    above the Gram matrix's scale for d = 2048 (the null end) to essentially
    unpenalised for a few features; on bench_compare's embeddings (d = 2048) the
    chosen C lies between 1e-3 and 1e-2, where decade steps (``DECADE_CS``, the old grid) are too coarse.
    *Ties.* Losses within a relative 1e-4 of the smallest count as tied, and ties go
    to the smallest C (the most regularised of equally good models).  On the large-C
    side the fits converge to the unpenalised one and their losses differ only in the
    fourth digit, so this keeps C off the grid's upper edge by rounding noise; on the
    small-C side the loss rises towards log 2, so a tie cannot pull C to the lower edge
    unless the data carry no signal.  (``scoring='roc_auc'`` keeps its old rule: mean
    per-fold AUC, exact ties to the smaller C.)

    Parameters
    ----------
    Cs : sequence of float or float
        Grid of inverse regularisation strengths (a single value skips the inner CV).
    inner_folds : int
        Folds of the stratified inner CV that picks C (shuffled with ``random_state``;
        capped at the number of minority-class rows).
    class_weight : {'balanced', None} or dict
        'balanced': ``n / (2 n_class)``; a dict maps class label -> weight.
    tol : float
        Newton stopping tolerance on the decrement, relative to the objective.
    max_iter : int
        Newton iterations per C.
    random_state : int
        Seed of the inner-CV shuffle.
    scoring : {'log_loss', 'roc_auc'}
        Inner-CV criterion (see above).

    Attributes
    ----------
    classes_ : ndarray, shape (2,)
    mean_, scale_ : ndarray, shape (n_features,)
        Standardisation fitted on the training data.
    coef_ : ndarray, shape (1, n_features)
        Coefficients on the original (unstandardised) features.
    intercept_ : ndarray, shape (1,)
    C_ : float
        Chosen C.
    Cs_ : ndarray, shape (n_Cs,)
        The grid, sorted.
    cv_scores_ : ndarray, shape (n_Cs,)
        Inner-CV score of each C, higher is better: minus the pooled class-weighted
        log-loss, or the mean AUC for ``scoring='roc_auc'`` (NaN when the inner CV was
        skipped).
    n_iter_ : int
        Newton iterations of the final refit (summed along the warm-started C path).
    n_features_in_ : int
    """

    def __init__(self, Cs=DEFAULT_CS, inner_folds: int = 3, class_weight: str | None = "balanced",
                 tol: float = 1e-8, max_iter: int = 100, random_state: int = 0,
                 scoring: str = "log_loss"):
        self.Cs = Cs
        self.inner_folds = inner_folds
        self.class_weight = class_weight
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state
        self.scoring = scoring

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def fit(self, X, y):
        """Fit on ``X`` (n_samples, n_features) and binary ``y`` (n_samples,); returns self."""
        if self.scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {', '.join(SCORINGS)}, got {self.scoring!r}")
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), y_numeric=False)
        check_classification_targets(y)
        self.classes_, y_codes = np.unique(y, return_inverse=True)
        if self.classes_.size != 2:
            raise ValueError(f"Only binary classification is supported. LinearProbe got "
                             f"{self.classes_.size} class(es): {self.classes_.tolist()[:5]}")
        if not (self.class_weight in ("balanced", None) or isinstance(self.class_weight, dict)):
            raise ValueError(f"class_weight must be 'balanced', None or a dict label -> weight, "
                             f"got {self.class_weight!r}")
        Cs = np.sort(np.atleast_1d(np.asarray(self.Cs, dtype=float)))
        if Cs.size == 0 or (Cs <= 0).any():
            raise ValueError(f"Cs must be positive, got {self.Cs!r}")
        t = y_codes.astype(np.float64)
        n = X.shape[0]
        counts = np.bincount(y_codes, minlength=2)
        if isinstance(self.class_weight, dict):
            sw = np.array([float(self.class_weight.get(c, 1.0)) for c in self.classes_])[y_codes]
        elif self.class_weight == "balanced":
            sw = (n / (2.0 * counts))[y_codes]
        else:
            sw = np.ones(n)
        self.mean_, self.scale_ = standardise(X)
        # float32 input stays float32 for the O(n^2 d) Gram product (the expensive part);
        # everything after it is float64.
        Z = (X - self.mean_.astype(X.dtype)) * (1.0 / self.scale_).astype(X.dtype)
        dual = X.shape[1] > n
        gram = (Z @ Z.T).astype(np.float64) if dual else None
        if not dual:
            Z = Z.astype(np.float64)

        def solve_path(rows, Cs_path, other=None):
            """Fit along Cs_path on rows; yield (C, decision on `other`)."""
            if dual:
                K = gram[np.ix_(rows, rows)]
                coef, b = np.zeros(rows.size), 0.0
                K_other = gram[np.ix_(other, rows)] if other is not None else None
            else:
                F = Z[rows]
                coef, b = np.zeros(Z.shape[1]), 0.0
            for C in Cs_path:
                if dual:
                    coef, b, it = _dual_logistic(K, t[rows], sw[rows], C, coef, b, self.tol,
                                                 self.max_iter)
                    out = None if other is None else K_other @ coef + b
                else:
                    coef, b, it = _newton_logistic(F, t[rows], sw[rows], C, coef, b,
                                                   self.tol, self.max_iter)
                    out = None if other is None else Z[other] @ coef + b
                yield coef, b, it, out

        self.cv_scores_ = np.full(Cs.size, np.nan)
        n_inner = min(int(self.inner_folds), int(counts.min()))
        if Cs.size > 1 and n_inner >= 2:
            splitter = StratifiedKFold(n_inner, shuffle=True, random_state=self.random_state)
            if self.scoring == "roc_auc":
                scores = np.empty((n_inner, Cs.size))
            else:
                loss = np.zeros(Cs.size)
            for k, (tr, va) in enumerate(splitter.split(np.zeros(n), y_codes)):
                for j, (_, _, _, decision) in enumerate(solve_path(tr, Cs, va)):
                    if self.scoring == "roc_auc":
                        scores[k, j] = batched_auc(t[va].astype(bool), decision)
                    else:
                        loss[j] += np.sum(sw[va] * (np.logaddexp(0.0, decision) - t[va] * decision))
            if self.scoring == "roc_auc":
                self.cv_scores_ = np.nanmean(scores, axis=0)
                tol = 0.0
            else:
                self.cv_scores_ = -loss / sw.sum()
                tol = _TIE_RTOL * abs(float(np.nanmax(self.cv_scores_)))
            if np.isfinite(self.cv_scores_).any():
                best_score = float(np.nanmax(self.cv_scores_))
                best = int(np.flatnonzero(self.cv_scores_ >= best_score - tol)[0])
            else:
                best = Cs.size // 2
        else:
            best = Cs.size // 2
        self.C_ = float(Cs[best])
        self.Cs_ = Cs

        n_iter = 0
        for coef, b, it, _ in solve_path(np.arange(n), Cs[: best + 1]):
            n_iter += it
        self.n_iter_ = n_iter
        w_std = Z.T.astype(np.float64) @ coef if dual else coef
        coef = w_std / self.scale_
        self.coef_ = coef.reshape(1, -1)
        self.intercept_ = np.array([b - float(self.mean_ @ coef)])
        return self

    def decision_function(self, X) -> np.ndarray:
        """Log-odds of the second class, shape (n_samples,)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=(np.float64, np.float32), reset=False)
        return X.astype(np.float64, copy=False) @ self.coef_[0] + self.intercept_[0]

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n_samples, 2) in the order of ``classes_``."""
        p = special.expit(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X) -> np.ndarray:
        """Predicted class (probability of ``classes_[1]`` >= 0.5)."""
        decision = self.decision_function(X)
        return self.classes_[(decision >= 0).astype(int)]


class RidgeProbe(RegressorMixin, BaseEstimator):
    """Standardise + ridge regression with alpha chosen by efficient leave-one-out (GCV).

    Parameters
    ----------
    alphas : sequence of float
        Grid of penalties (sklearn :class:`~sklearn.linear_model.RidgeCV`).

    Attributes
    ----------
    mean_, scale_ : ndarray, shape (n_features,)
    alpha_ : float
    coef_ : ndarray, shape (n_features,)
        On the original features.
    intercept_ : float
    """

    def __init__(self, alphas=tuple(float(a) for a in np.logspace(-2, 6, 9))):
        self.alphas = alphas

    def fit(self, X, y):
        """Fit on ``X`` (n_samples, n_features), continuous ``y`` (n_samples,); returns self."""
        from sklearn.linear_model import RidgeCV

        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        self.mean_, self.scale_ = standardise(X)
        model = RidgeCV(alphas=np.asarray(self.alphas, float)).fit((X - self.mean_) / self.scale_,
                                                                   y)
        self.alpha_ = float(model.alpha_)
        self.coef_ = model.coef_ / self.scale_
        self.intercept_ = float(model.intercept_ - self.mean_ @ self.coef_)
        return self

    def predict(self, X) -> np.ndarray:
        """Predicted values, shape (n_samples,)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return X @ self.coef_ + self.intercept_


class KNNProbe(ClassifierMixin, BaseEstimator):
    """Standardise + cosine k-nearest-neighbour classifier with a class-balanced vote.

    The probability of the second class is ``(k1 / n1) / (k1 / n1 + k0 / n0)``, where
    ``k_c`` neighbours of class c are found among ``n_c`` training rows of that class,
    so a 20 % minority is not outvoted by prevalence alone.

    Parameters
    ----------
    n_neighbors : int

    Attributes
    ----------
    classes_, mean_, scale_ ; fitted standardisation and labels.
    """

    def __init__(self, n_neighbors: int = 15):
        self.n_neighbors = n_neighbors

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def fit(self, X, y):
        """Store the standardised, L2-normalised training rows; returns self."""
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if self.classes_.size != 2:
            raise ValueError(f"Only binary classification is supported. KNNProbe got "
                             f"{self.classes_.size} class(es): {self.classes_.tolist()[:5]}")
        if int(self.n_neighbors) < 1:
            raise ValueError(f"n_neighbors must be >= 1, got {self.n_neighbors}")
        self.mean_, self.scale_ = standardise(X)
        self._train = self._embed(X)
        self._codes = codes
        self._class_counts = np.bincount(codes, minlength=2).astype(float)
        return self

    def _embed(self, X):
        Z = (X - self.mean_) / self.scale_
        norm = np.linalg.norm(Z, axis=1, keepdims=True)
        return Z / np.where(norm > 0, norm, 1.0)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n_samples, 2)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        sim = self._embed(X) @ self._train.T
        k = min(int(self.n_neighbors), sim.shape[1])
        nearest = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        k_pos = self._codes[nearest].sum(axis=1)
        rate_pos = k_pos / self._class_counts[1]
        rate_neg = (k - k_pos) / self._class_counts[0]
        p = rate_pos / (rate_pos + rate_neg)
        return np.column_stack([1.0 - p, p])

    def predict(self, X) -> np.ndarray:
        """Predicted class (balanced probability >= 0.5)."""
        proba = self.predict_proba(X)[:, 1]
        return self.classes_[(proba >= 0.5).astype(int)]
