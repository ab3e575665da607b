"""Samplers for the training loader."""
from __future__ import annotations

from timm.data.distributed_sampler import RepeatAugSampler as _TimmRepeatAugSampler
from torch.utils.data import Dataset, DistributedSampler

__all__ = ["RepeatAugSampler"]


class RepeatAugSampler(DistributedSampler):
    """timm's repeated-augmentation sampler (DeiT), each sample ``num_repeats`` times per epoch spread over
    ranks. A DistributedSampler subclass so that Lightning does not wrap it in a second distributed sampler."""

    def __init__(self, dataset: Dataset, num_repeats: int, num_replicas: int = 1, rank: int = 0,
                 shuffle: bool = True):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle)
        self.sampler = _TimmRepeatAugSampler(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, num_repeats=num_repeats,
        )

    def __iter__(self):
        return iter(self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.sampler.set_epoch(epoch)
