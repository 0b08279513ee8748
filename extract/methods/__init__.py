"""Self-supervised pretraining methods; each returns a per-sample loss ``(B,)``.

``build_method(name, encoder, **hparams)`` with name in simclr, moco, byol, dino, mae.
"""

from neurofeat.extract.methods.base import METHODS, SSLMethod, build_method
from neurofeat.extract.methods.byol import BYOL
from neurofeat.extract.methods.dino import DINO
from neurofeat.extract.methods.mae import MAE
from neurofeat.extract.methods.moco import MoCo
from neurofeat.extract.methods.simclr import SimCLR

#: Method names in the order the CLI lists them.
METHOD_NAMES: tuple[str, ...] = ("simclr", "moco", "byol", "dino", "mae")

__all__ = ["BYOL", "DINO", "MAE", "METHODS", "METHOD_NAMES", "MoCo", "SSLMethod", "SimCLR", "build_method"]
