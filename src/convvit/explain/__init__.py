"""Explain what a trained model looks at: attention maps, attention rollout, mean attention distance.

``attention_maps(model, images)`` captures the attention probabilities every block used (fused
attention stays on: the maps are recomputed from the same q and k by forward hooks);
``rollout(maps)`` turns them into a per-patch relevance of the class token; ``attention_distance(maps)``
gives how far each head looks. ``convvit explain`` draws them (:mod:`convvit.explain.command`).
"""
from convvit.explain.maps import (
    AttentionMaps, MapInfo, attention_distance, attention_maps, capture_attention, rollout,
)

__all__ = ["AttentionMaps", "MapInfo", "attention_distance", "attention_maps", "capture_attention", "rollout"]
