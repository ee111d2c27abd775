"""Data loaders whose order depends only on (seed, epoch), so that a resumed run sees the same batches.

Training: each epoch is shuffled by a generator seeded with ``seed + epoch`` (``DistributedSampler``), split
into equal shares across processes (padded by repeating a few chunks), and worker processes are seeded from a
generator seeded the same way. Validation: chunk ``i`` goes to process ``i % num_processes``, without padding,
so that the summed counts cover every chunk exactly once.

Exact resume holds when the dataset draws no random numbers of its own, or when ``num_workers = 0`` (the
restored global RNG state then drives it); with ``persistent_workers``, workers keep their random streams
across epochs, which a resumed run cannot reproduce.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from diarizen_lab.errors import DiarizenLabError
from diarizen_lab.training.settings import DataLoaderSettings


class EpochLoader:
    """Training batches of one process, epoch by epoch."""

    def __init__(
        self,
        dataset: Dataset,
        settings: DataLoaderSettings,
        *,
        seed: int,
        num_processes: int = 1,
        process_index: int = 0,
        pin_memory: bool = False,
        collate_fn: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        if len(dataset) == 0:
            raise DiarizenLabError("the training set has no chunk: check [train_dataset] data_dir and [task] chunk_size")
        self.sampler = DistributedSampler(
            dataset, num_replicas=num_processes, rank=process_index, shuffle=True, seed=seed
        )
        self.generator = torch.Generator()
        self.loader = DataLoader(
            dataset,
            batch_size=settings.batch_size,
            sampler=self.sampler,
            num_workers=settings.num_workers,
            pin_memory=pin_memory and settings.pin_memory,
            persistent_workers=settings.persistent_workers and settings.num_workers > 0,
            collate_fn=collate_fn,
            generator=self.generator,
        )

    @property
    def seed(self) -> int:
        """Seed of the data order: epoch ``e`` is shuffled by a generator seeded with ``seed + e``."""
        return self.sampler.seed

    @seed.setter
    def seed(self, seed: int) -> None:
        self.sampler.seed = seed

    def __len__(self) -> int:
        """Batches per epoch on this process (the same on every process)."""
        return len(self.loader)

    def epoch(self, epoch: int) -> Iterator[Any]:
        """The batches of ``epoch`` (1-based)."""
        self.sampler.set_epoch(epoch)
        self.generator.manual_seed(self.seed + epoch)
        return iter(self.loader)


def validation_loader(
    dataset: Dataset,
    settings: DataLoaderSettings,
    *,
    num_processes: int = 1,
    process_index: int = 0,
    pin_memory: bool = False,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> DataLoader:
    """This process's share of the validation set, in order."""
    if len(dataset) < num_processes:
        raise DiarizenLabError(
            f"the validation set has {len(dataset)} chunk(s), fewer than the {num_processes} processes: "
            "use a larger validation set or fewer processes"
        )
    share = Subset(dataset, range(process_index, len(dataset), num_processes))
    return DataLoader(
        share,
        batch_size=settings.batch_size,
        shuffle=False,
        num_workers=settings.num_workers,
        pin_memory=pin_memory and settings.pin_memory,
        persistent_workers=settings.persistent_workers and settings.num_workers > 0,
        collate_fn=collate_fn,
    )


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) batch to ``device``; other values are kept as they are."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(value, device) for value in batch)
    return batch
