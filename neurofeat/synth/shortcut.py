"""A documented site shortcut: acquisition that predicts a marker where it should not.

Real multi-site cohorts hold spurious associations: a scanner that a centre used for
its referral clinic, a protocol used for one trial, so that *how* a patient was scanned
predicts a label at the sites a model is trained on, but not elsewhere. An encoder that
learns acquisition then looks good in cross-validation and fails at a new site; that is
the failure Group-DRO and leave-one-site-out evaluation are meant to expose.

The model.  Every site runs two scanners: ``A`` (the site protocol of
:mod:`neurofeat.synth.acquisition`) and ``B`` (the same protocol with a stronger
contrast exponent, more thermal noise and some Gibbs ringing, all times
``scanner_shift``, so the difference survives per-channel z-scoring). With shortcut
strength ``s`` in [0, 1) and the selected markers' mean ``m`` (0..1, the true labels),

    P(scanner B) = 1/2 + (s/2)·(2m − 1)   at the training sites,
    P(scanner B) = 1/2 − (s/2)·(2m − 1)   at the held-out site (reversed).

For one marker the scanner alone then ranks patients with an AUC of about
``1/2 + s/2`` at the training sites and ``1/2 − s/2`` at the held-out site. The causal
phenotype (tumour appearance, :mod:`neurofeat.synth.labels`) does not change; the
scanner is drawn from its own random stream, so the labels, survival and tumours of a
seed are the same with or without a shortcut.

:func:`shortcut_card` states, per site, which effects are causal and which spurious,
and what an encoder that used only the spurious feature (the scanner) or only the
causal features (the latent imaging traits) would score.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from neurofeat.synth.acquisition import SiteProtocol
from neurofeat.synth.labels import MARKERS, TRAITS

__all__ = ["Shortcut", "draw_scanners", "scanner_protocol", "shortcut_card"]


@dataclass(frozen=True)
class Shortcut:
    """Settings of the planted site shortcut.

    Parameters
    ----------
    strength : float
        ``s`` in [0, 1): 0 = no shortcut (every patient on scanner A).
    markers : tuple of str
        Markers whose labels choose the scanner (see the module docstring).
    held_out_site : str, optional
        The site where the association is reversed (default: the last site).
    scanner_shift : float
        Size of scanner B's deviation (contrast exponent ×exp(0.25·shift), thermal
        noise +0.02·shift, Gibbs ringing +0.15·shift).

    Raises
    ------
    ValueError
        Strength outside [0, 1), an unknown marker, or a negative shift.
    """

    strength: float = 0.0
    markers: tuple[str, ...] = ("mgmt",)
    held_out_site: str | None = None
    scanner_shift: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.strength) < 1.0:
            raise ValueError(f"shortcut strength is {self.strength}; use a value in [0, 1) "
                             "(0 = no shortcut, 0.8 = strong).")
        unknown = [m for m in self.markers if m not in MARKERS]
        if unknown or not self.markers:
            raise ValueError(f"shortcut markers {list(self.markers)}: use one or more of "
                             f"{', '.join(MARKERS)}.")
        if not self.scanner_shift >= 0:
            raise ValueError(f"scanner_shift is {self.scanner_shift}; use a value >= 0.")
        object.__setattr__(self, "markers", tuple(self.markers))

    @property
    def enabled(self) -> bool:
        """True when a shortcut is planted (strength > 0)."""
        return self.strength > 0

    def held_out(self, sites: list[str]) -> str:
        """The held-out site among ``sites`` (default: the last one)."""
        site = self.held_out_site or sites[-1]
        if site not in sites:
            raise ValueError(f"shortcut held-out site '{site}' is not one of the cohort's sites "
                             f"({', '.join(sites)}).")
        return site

    def to_dict(self) -> dict:
        """Plain-JSON form (for synth.json)."""
        return {"strength": float(self.strength), "markers": list(self.markers),
                "held_out_site": self.held_out_site, "scanner_shift": float(self.scanner_shift)}


def draw_scanners(truth: pd.DataFrame, shortcut: Shortcut,
                  rng: np.random.Generator) -> pd.DataFrame:
    """The scanner of every patient.

    Parameters
    ----------
    truth : DataFrame
        Truth table with ``site`` and ``<marker>_true`` columns, one row per patient.
    shortcut : Shortcut
    rng : numpy.random.Generator
        The scanner stream (one uniform per patient, drawn even without a shortcut).

    Returns
    -------
    DataFrame, index of ``truth``
        ``scanner`` ('A'/'B'), ``p_scanner_b`` and ``shortcut_role`` ('train',
        'held_out'; 'none' without a shortcut).
    """
    uniform = rng.random(len(truth))  # drawn first, so the stream is the same either way
    if not shortcut.enabled:
        return pd.DataFrame({"scanner": "A", "p_scanner_b": 0.0, "shortcut_role": "none"},
                            index=truth.index)
    held_out = shortcut.held_out(sorted(truth["site"].unique().tolist()))
    mean_label = np.mean([truth[f"{m}_true"].to_numpy(bool) for m in shortcut.markers], axis=0)
    sign = np.where(truth["site"].to_numpy() == held_out, -1.0, 1.0)
    p_b = 0.5 + sign * (shortcut.strength / 2.0) * (2.0 * mean_label - 1.0)
    return pd.DataFrame({"scanner": np.where(uniform < p_b, "B", "A"), "p_scanner_b": p_b,
                         "shortcut_role": np.where(sign < 0, "held_out", "train")},
                        index=truth.index)


def scanner_protocol(protocol: SiteProtocol, scanner: str, shortcut: Shortcut) -> SiteProtocol:
    """The acquisition of ``scanner`` ('A' = the site protocol, 'B' = its variant)."""
    if scanner == "A" or not shortcut.enabled:
        return protocol
    shift = float(shortcut.scanner_shift)
    return dataclasses.replace(
        protocol,
        gamma={seq: float(g * np.exp(0.25 * shift)) for seq, g in protocol.gamma.items()},
        noise_std=float(protocol.noise_std + 0.02 * shift),
        gibbs_alpha=float(min(protocol.gibbs_alpha + 0.15 * shift, 0.9)),
    )


def shortcut_card(truth: pd.DataFrame, shortcut: Shortcut) -> dict:
    """What is causal, what is spurious, and what each kind of encoder would score.

    For every shortcut marker and site: the AUC of the scanner alone (an encoder that
    learnt only the spurious feature, its score oriented as at the training sites) and
    the AUC of a logistic regression on the six latent imaging traits fitted on the
    training sites' patients (an encoder that learnt only the causal phenotype,
    evaluated in-sample at the training sites and out of sample at the held-out site).

    Parameters
    ----------
    truth : DataFrame
        With ``site``, ``scanner``, ``shortcut_role``, the traits and ``<marker>_true``.
    shortcut : Shortcut

    Returns
    -------
    dict
        ``settings``, ``causal`` (trait effects of each marker: see
        :mod:`neurofeat.synth.labels`), ``spurious`` (the scanner rule), and
        ``expected_auc``: a list of {marker, site, role, n, n_pos,
        auc_spurious_only, auc_causal_only}.
    """
    from sklearn.linear_model import LogisticRegression

    from neurofeat.analysis.metrics import roc_auc

    card: dict = {"settings": shortcut.to_dict(),
                  "causal": "tumour appearance: the latent imaging traits "
                            f"({', '.join(TRAITS)}) depend on the markers as stated in "
                            "neurofeat.synth.labels; unchanged by the shortcut",
                  "spurious": "scanner B is used more often for patients positive for "
                              f"{', '.join(shortcut.markers)} at the training sites and less "
                              "often at the held-out site (P(B) = 1/2 ± s/2·(2m − 1))",
                  "expected_auc": []}
    if not shortcut.enabled:
        return card
    traits = truth[list(TRAITS)].to_numpy(float)
    train = truth["shortcut_role"].to_numpy() == "train"
    scanner_b = (truth["scanner"] == "B").to_numpy(float)
    for marker in shortcut.markers:
        labels = truth[f"{marker}_true"].to_numpy(bool)
        causal = LogisticRegression(C=1.0, max_iter=1000).fit(traits[train], labels[train])
        causal_score = causal.decision_function(traits)
        for site, rows in truth.groupby("site", sort=True).groups.items():
            index = truth.index.get_indexer(rows)
            card["expected_auc"].append({
                "marker": marker, "site": site,
                "role": str(truth["shortcut_role"].iloc[index[0]]),
                "n": int(index.size), "n_pos": int(labels[index].sum()),
                "auc_spurious_only": round(roc_auc(labels[index], scanner_b[index]), 4),
                "auc_causal_only": round(roc_auc(labels[index], causal_score[index]), 4),
            })
    return card
