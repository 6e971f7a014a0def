"""The run's data loaders: training batches, the policy's cache and the calibration list, each
rank reading its share under torchrun."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import data as adamml_data
import runs
from runtime import Runtime
from torch.utils.data import DataLoader, DistributedSampler


class Data:
    """The run's loaders: training (T = ``num_segments``), the policy's cache (training
    augmentation, T = ``test_segments``) and calibration (deterministic, T = test)."""

    def __init__(self, config: runs.RunConfig, classes: list[str], rt: Runtime, workers: int,
                 strict: bool, cache_dir: Path | None) -> None:  # fmt: skip
        def dataset(path: str, train: bool, data: Any = config.data) -> Any:
            return adamml_data.VideoDataset(path, config.data_root, data, train=train,
                                            classes=classes, strict=strict, cache_dir=cache_dir,
                                            informative=config.informative)  # fmt: skip

        def loader(data: Any, sampler: Any, drop_last: bool = False) -> DataLoader[Any]:
            return DataLoader(data, batch_size=config.batch_size, sampler=sampler,
                              num_workers=workers, collate_fn=adamml_data.collate,
                              pin_memory=rt.device.type == "cuda", drop_last=drop_last)  # fmt: skip

        train_set = dataset(config.train_list, True)
        self.multi_label: bool = train_set.multi_label
        # The same seed on every rank and every epoch index: the shuffle is a function of (seed,
        # epoch), which is what makes a resumed run see the same batches.
        self.sampler = DistributedSampler(
            train_set, num_replicas=rt.world, rank=rt.rank, shuffle=True, seed=config.seed,
            drop_last=True,
        )  # fmt: skip
        self.train = loader(train_set, self.sampler, drop_last=True)
        long = dataclasses.replace(config.data, num_segments=config.data.test_segments)
        self.cache = loader(*self._sharded(dataset(config.train_list, True, long), rt))
        self.calib = loader(*self._sharded(dataset(config.calib_list, False), rt))

    @staticmethod
    def _sharded(data: Any, rt: Runtime) -> tuple[Any, Any]:
        return data, DistributedSampler(data, rt.world, rt.rank, shuffle=False)
