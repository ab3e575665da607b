"""convvit models. Importing this package registers every model (into timm too)."""
from convvit.models import vit  # noqa: F401  (registers ViT_P, ViT_C, DeiT)
from convvit.models.registry import default_cfg, is_model, list_models, register_model

for _optional in ("convit", "cvt"):
    try:  # families added in their own modules; a missing one does not break the rest
        __import__(f"convvit.models.{_optional}")
    except ModuleNotFoundError as _err:
        if _err.name != f"convvit.models.{_optional}":
            raise

from convvit.models.factory import create_classifier, create_model  # noqa: E402  (after the families register)

__all__ = ["create_classifier", "create_model", "default_cfg", "is_model", "list_models", "register_model"]
