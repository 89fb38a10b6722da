"""One vectorised model per device kind (see :mod:`simulators.models.base`)."""

from __future__ import annotations

from .base import Effect, Emission, Model
from .bridge import BridgeModel
from .fume import FumeModel
from .gas import GasMeterModel
from .lighting import LightingModel
from .noise import NoiseModel
from .toilet import ToiletModel

MODELS: dict[str, type[Model]] = {
    "bridge": BridgeModel,
    "gas_meter": GasMeterModel,
    "fume": FumeModel,
    "noise": NoiseModel,
    "toilet": ToiletModel,
    "lighting": LightingModel,
}

__all__ = ["MODELS", "Model", "Effect", "Emission", "BridgeModel", "GasMeterModel", "FumeModel",
           "NoiseModel", "ToiletModel", "LightingModel"]
