"""convvit: vision transformers that see better with convolutions (ViT_C, ViT_P, DeiT, ConViT, CvT)."""
from convvit.models import create_model, default_cfg, is_model, list_models, register_model

__version__ = "0.1.0"


def load_checkpoint(model, path, **kwargs):
    """Load a convvit, timm, official or Hugging Face checkpoint file into ``model`` (see convvit.models.weights)."""
    from convvit.models.weights import load_checkpoint as _load

    return _load(model, path, **kwargs)


__all__ = ["create_model", "default_cfg", "is_model", "list_models", "load_checkpoint", "register_model", "__version__"]
