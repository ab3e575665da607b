"""Explain what a trained model looks at: attention maps, attention rollout, mean attention distance.

``attention_maps(model, images)`` captures the attention probabilities every block used (fused
attention stays on: the maps are recomputed from the same q and k by forward hooks);
``explain_image(model, image)`` gives one image's logits, maps and the family's own figure panels from one
forward pass; ``rollout(maps)`` turns maps into a per-patch relevance of the class token;
``attention_distance(maps)`` gives how far each head looks. ``convvit explain`` draws them
(:mod:`convvit.explain.command`). A model family is explained through its contract
(:class:`~convvit.models._base.TokenModel`), not by name.
"""
from convvit.explain.maps import (
    AttentionMaps,
    Explanation,
    MapInfo,
    attention_distance,
    attention_maps,
    attention_modules,
    capture_attention,
    explain_image,
    rollout,
)

__all__ = [
    "AttentionMaps", "Explanation", "MapInfo", "attention_distance", "attention_maps", "attention_modules",
    "capture_attention", "explain_image", "rollout",
]
