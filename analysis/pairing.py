"""Which backbones a comparison pairs: families, single backbones and seed references.

Families: ``base`` = byol, dino, mae, moco; ``dro`` = their ``_dro`` twins. Family
against family pairs member by member (byol vs byol_dro, ...); a family against one
backbone pairs each member with it. A seed reference pairs side A with the same recipe
pretrained with another seed, the yardstick of :func:`seed_noise_verdict`.

Examples
--------
>>> known = ["byol", "dino", "mae", "moco", "byol_dro", "dino_dro", "mae_dro", "moco_dro"]
>>> pair_backbones("base", "dro", known)[:2]
[('byol', 'byol_dro'), ('dino', 'dino_dro')]
>>> pair_backbones("dino", "dino_dro", known)
[('dino', 'dino_dro')]
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["FAMILIES", "resolve_side", "pair_backbones", "seed_reference_pairs",
           "seed_noise_verdict"]

#: Backbone families usable as a side of a comparison.
FAMILIES: dict[str, tuple[str, ...]] = {
    "base": ("byol", "dino", "mae", "moco"),
    "dro": ("byol_dro", "dino_dro", "mae_dro", "moco_dro"),
}


def resolve_side(name: str, known: Sequence[str]) -> tuple[str, ...]:
    """Backbones of one side: a family name or one backbone.

    Raises
    ------
    ValueError
        Unknown name (lists the known backbones and families and the closest match),
        or a family with members missing from the store.
    """
    from neurofeat.suggest import did_you_mean

    known = list(known)
    if name in FAMILIES:
        members = FAMILIES[name]
        missing = [m for m in members if m not in known]
        if missing:
            raise ValueError(f"family '{name}' needs backbones {', '.join(members)}; the store "
                             f"lacks {', '.join(missing)} (has: {', '.join(known) or 'none'})")
        return members
    if name in known:
        return (name,)
    choices = known + list(FAMILIES)
    raise ValueError(f"unknown backbone '{name}'.{did_you_mean(name, choices)} Backbones in "
                     f"the store: {', '.join(known) or 'none'}; families: {', '.join(FAMILIES)}.")


def _method(backbone: str) -> str:
    return backbone[:-4] if backbone.endswith("_dro") else backbone


def pair_backbones(a: str, b: str, known: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs compared for sides ``a`` and ``b`` (families pair member by member).

    Two families pair by method (``byol`` with ``byol_dro``); a family against a
    single backbone pairs each member with it; two backbones make one pair.
    """
    side_a = resolve_side(a, known)
    side_b = resolve_side(b, known)
    if len(side_a) > 1 and len(side_b) > 1:
        by_method = {_method(m): m for m in side_b}
        pairs = [(m, by_method[_method(m)]) for m in side_a if _method(m) in by_method]
        if not pairs:
            raise ValueError(f"families '{a}' and '{b}' share no method to pair on")
        return pairs
    pairs = [(x, y) for x in side_a for y in side_b if x != y]
    if not pairs:
        raise ValueError(f"nothing to compare: '{a}' and '{b}' are the same backbone")
    return pairs


def seed_reference_pairs(side_a: str, references: Sequence[str],
                         known: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs of the seed-noise reference: side A's backbones vs the same recipes, other seed.

    A single backbone pairs with every reference (``dino`` vs ``dino_s1``, ``dino_s2``);
    a family pairs each member with the one reference named after it
    (``byol`` -> ``byol_s1``: a name starting with the member's name and ``_``, not its
    ``_dro`` twin).

    Raises
    ------
    ValueError
        A reference the store lacks (closest name suggested), a reference that is a
        member of side A, or a family member without exactly one reference.

    Examples
    --------
    >>> known = ["dino", "dino_dro", "dino_s1", "mae", "mae_s1"]
    >>> seed_reference_pairs("dino", ["dino_s1"], known)
    [('dino', 'dino_s1')]
    """
    from neurofeat.suggest import did_you_mean

    known = list(known)
    refs = [r.strip() for r in references if r.strip()]
    if not refs:
        raise ValueError("--seed-reference needs at least one backbone name (e.g. dino_s1)")
    for ref in refs:
        if ref not in known:
            raise ValueError(f"seed reference '{ref}' is not a backbone of the store."
                             f"{did_you_mean(ref, known)} Backbones: {', '.join(known)}. "
                             "Pretrain and extract the base recipe with another seed first.")
    members = resolve_side(side_a, known)
    clash = [r for r in refs if r in members]
    if clash:
        raise ValueError(f"seed reference {clash[0]!r} is a backbone of side '{side_a}' itself; "
                         "name the same recipe trained with another seed")
    if len(members) == 1:
        return [(members[0], ref) for ref in refs]
    pairs = []
    for member in members:
        mine = [r for r in refs if r.startswith(member + "_") and
                not r.startswith(member + "_dro")]
        if len(mine) != 1:
            raise ValueError(f"--seed-reference for family '{side_a}': member '{member}' needs "
                             f"exactly one reference named {member}_<seed> (e.g. {member}_s1), "
                             f"found {mine or 'none'} among {', '.join(refs)}")
        pairs.append((member, mine[0]))
    return pairs


def seed_noise_verdict(label: str, diff: float, ci: tuple[float, float], ref_diff: float,
                       ref_ci: tuple[float, float]) -> tuple[bool, str]:
    """Does A - B exceed seed-to-seed variation (A - the same recipe, another seed)?

    It does when ``|A - B| > |A - seed|`` and the two intervals do not overlap.

    Returns
    -------
    (exceeds, line)
        ``line`` states both differences, their intervals and the verdict.

    Examples
    --------
    >>> seed_noise_verdict("auc", 0.066, (-0.02, 0.15), 0.049, (-0.03, 0.13))[0]
    False
    """
    overlap = not (ci[1] < ref_ci[0] or ref_ci[1] < ci[0])
    larger = abs(diff) > abs(ref_diff)
    exceeds = bool(larger and not overlap)
    why = []
    why.append(f"|A-B| {abs(diff):.3f} {'>' if larger else '<='} |A-seed| {abs(ref_diff):.3f}")
    why.append("intervals overlap" if overlap else "intervals do not overlap")
    verdict = "exceeds" if exceeds else "does not exceed"
    return exceeds, (f"{label}: A-B {diff:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}] vs seed-to-seed "
                     f"{ref_diff:+.3f} [{ref_ci[0]:+.3f}, {ref_ci[1]:+.3f}]: {', '.join(why)} "
                     f"-> A-B {verdict} seed-to-seed variation")
