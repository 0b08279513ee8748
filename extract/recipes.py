"""Named pretraining recipes: settings measured to learn within a budget.

A recipe fixes, per SSL method, what the command's options would otherwise leave at
their paper defaults (which are sized for 100 epochs of ResNet50 at 128³ on GPUs):
encoder size, resolution, epochs, learning rate, batch, crop strength and method
hyper-parameters, and the Group-DRO step ``eta``. ``neurofeat pretrain --recipe
cpu-demo --method simclr`` applies one; an option given on the command line wins over
the recipe.

``cpu-demo`` is sized for the demo's tiny encoder (ResNet10 ×0.25 at 32³, 6 mm) on a
CPU; the numbers each entry reached on the synthetic 240-patient cohort with the site
shortcut are in ``measured`` (and in README "Pretraining recipes"), stated as they came
out, including the methods that did not learn in the budget.

Group-DRO's ``eta``: q is updated by ``q_g ∝ q_g exp(eta L_g)`` every step, so over T
steps q moves by ``exp(eta · T · ΔL)`` where ΔL is the gap between group losses. SSL
losses of different sites differ by a few hundredths to tenths (issue 14 measured
8.218/8.213/8.207 for DINO), so Sagawa et al.'s 0.01 (sized for classification losses)
leaves q near uniform in a short run: ``eta = 0.01`` and a 0.05 gap over 240 steps (8
epochs of 240 patients at batch 8) move q from 1/2 to 0.53. ``eta = 1`` goes too far the
other way: with 2–3 patients per group in a balanced batch of 8 the per-step group
losses are noisy, and on the 240-patient cohort SimCLR + DRO put q at
(0.92, 0.02, 0.05) after one epoch and (0.93, 0.07, 0.0004) after two, while the epoch
means of the group losses differed by at most 0.07. The recipes use ``eta = 0.1``: q
went (1/3, 1/3, 1/3) → (0.47, 0.23, 0.31) → (0.54, 0.26, 0.20) → (0.53, 0.30, 0.17) →
(0.53, 0.32, 0.15) over 4 epochs, moving with the sustained gaps without collapsing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from neurofeat.suggest import did_you_mean

__all__ = ["RECIPES", "Recipe", "RecipeError", "get_recipe", "recipe_names"]


class RecipeError(ValueError):
    """An unknown recipe name, or a method the recipe has no entry for."""


@dataclass(frozen=True)
class Recipe:
    """One method's settings in a named recipe.

    Parameters
    ----------
    name : str
        Recipe name (``cpu-demo``).
    method : str
        SSL method the settings are for.
    arch, widen_factor, input_size, spacing : encoder and resolution.
    epochs, batch_size, lr, weight_decay, schedule, warmup_epochs : optimisation.
    eta : float
        Group-DRO step size of q (used with ``--dro``).
    method_params : mapping
        Method hyper-parameters (crop scale, projector width, temperature, ...).
    augment : mapping
        :class:`~neurofeat.extract.augment.AugmentConfig` fields overriding its defaults.
    measured : str
        What this recipe reached where it was measured (honest, including failures).
    """

    name: str
    method: str
    arch: str = "resnet10"
    widen_factor: float = 0.25
    input_size: int = 32
    spacing: float = 6.0
    epochs: int = 8
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.05
    schedule: str = "constant"
    warmup_epochs: int = 0
    eta: float = 0.1
    method_params: Mapping[str, Any] = field(default_factory=dict)
    augment: Mapping[str, Any] = field(default_factory=dict)
    measured: str = ""

    def options(self) -> dict[str, Any]:
        """The recipe as keyword arguments of :func:`neurofeat.runs.pretrain.pretrain_config`."""
        return {"arch": self.arch, "widen_factor": self.widen_factor, "input_size": self.input_size,
                "spacing": self.spacing, "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                "weight_decay": self.weight_decay, "schedule": self.schedule,
                "warmup_epochs": self.warmup_epochs, "eta": self.eta,
                "method_params": dict(self.method_params), "augment": dict(self.augment)}

    def summary(self) -> str:
        """One line: the settings that matter."""
        params = ", ".join(f"{k}={v}" for k, v in self.method_params.items())
        return (f"recipe {self.name}/{self.method}: {self.arch} x{self.widen_factor:g} at {self.input_size}^3, "
                f"{self.spacing:g} mm; {self.epochs} epochs, batch {self.batch_size}, lr {self.lr:g} "
                f"({self.schedule}), eta {self.eta:g}" + (f"; {params}" if params else ""))


_TINY_HEAD = {"proj_hidden_dim": 512}

_COHORT = ("240-patient synthetic cohort with the site shortcut (synth --n 240 --size 32 --spacing 6 --shortcut 0.6, "
           "seed 0), IDH1, stats compare k=5 folds, R=10 repeats [R=5], against the random-init encoder (IDH1 AUC "
           "0.634 [0.644]; radiomics 0.813, oracle traits 0.943): ")

#: recipe name -> method -> Recipe
RECIPES: dict[str, dict[str, Recipe]] = {
    "cpu-demo": {
        "simclr": Recipe(
            "cpu-demo", "simclr", epochs=8, lr=1e-3, batch_size=8,
            method_params={**_TINY_HEAD, "temperature": 0.2, "crop_scale": (0.6, 1.0)},
            measured=_COHORT + "AUC 0.773, difference +0.139 (+0.016, +0.261) calibrated [+0.128 (-0.009, "
                     "+0.266)], DeLong p 0.005; site balanced accuracy 0.80 -> 0.59; about 140 s of CPU (1 thread). "
                     "Worse: strong intensity augmentation (0.763), batch 16 + lr 2e-3 cosine (0.760)"),
        "moco": Recipe(
            "cpu-demo", "moco", epochs=8, lr=1e-3, batch_size=8,
            method_params={**_TINY_HEAD, "temperature": 0.2, "momentum": 0.99, "crop_scale": (0.6, 1.0)},
            measured=_COHORT + "AUC 0.771, difference +0.136 (+0.017, +0.256) [+0.130 (-0.010, +0.270)], "
                     "DeLong p 0.003; site balanced accuracy 0.80 -> 0.64; 133 s of CPU"),
        "byol": Recipe(
            "cpu-demo", "byol", epochs=8, lr=1e-3, batch_size=8,
            method_params={**_TINY_HEAD, "tau_base": 0.99, "crop_scale": (0.6, 1.0)},
            measured=_COHORT + "AUC 0.774, difference +0.140 (+0.021, +0.259) [+0.125 (-0.009, +0.259)], "
                     "DeLong p 0.002; site balanced accuracy 0.80 -> 0.60; 135 s of CPU. 12 epochs were worse "
                     "(AUC 0.732, 228 s)"),
        "dino": Recipe(
            "cpu-demo", "dino", epochs=8, lr=1e-3, batch_size=8,
            method_params={"out_dim": 1024, "hidden_dim": 512, "bottleneck_dim": 128, "n_local": 2,
                           "teacher_momentum": 0.99},
            measured=_COHORT + "AUC 0.753, difference [+0.109 (-0.035, +0.252)], DeLong p 0.007; the loss sits at "
                     "ln(1024) = 6.93 from epoch 2 (the head's output is uniform: collapsed); site balanced "
                     "accuracy stays 0.84; 205 s of CPU"),
        "mae": Recipe(
            "cpu-demo", "mae", epochs=8, lr=1e-3, batch_size=8,
            method_params={"mask_ratio": 0.6},
            measured=_COHORT + "does not learn IDH1 here: learning curve AUC 0.634 (untrained) -> 0.548 after 4 "
                     "epochs while site balanced accuracy rose 0.80 -> 0.98 (reconstruction learns the scanner); "
                     "stopped after 5 epochs"),
    },
}


def recipe_names() -> list[str]:
    """The known recipe names, sorted."""
    return sorted(RECIPES)


def get_recipe(name: str, method: str) -> Recipe:
    """The settings of recipe *name* for *method*.

    Raises
    ------
    RecipeError
        Unknown recipe (the closest name is suggested) or a method the recipe lacks.
    """
    key = str(name).strip().lower()
    if key not in RECIPES:
        raise RecipeError(f"unknown --recipe {name!r}.{did_you_mean(key, recipe_names())} "
                          f"Known recipes: {', '.join(recipe_names())}.")
    methods = RECIPES[key]
    method_key = str(method).strip().lower()
    if method_key not in methods:
        raise RecipeError(f"recipe {key!r} has no settings for method {method!r}; it covers "
                          f"{', '.join(sorted(methods))}.")
    return methods[method_key]
