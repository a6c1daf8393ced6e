"""Batches already on the right device: uint8 images live there once, normalised and augmented per batch."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from tune_spacenas.data.spec import SplitData


class DeviceData:
    """The three splits as uint8 NCHW tensors on ``device`` with per-batch normalisation and augmentation.

    A training stream draws batches from a fresh seeded permutation every epoch; augmentation (random
    crop with padding resolution/8, horizontal flip) runs on the whole batch at once, so a step has no
    Python per-image work.
    """

    def __init__(self, data: SplitData, device: torch.device | str = "cpu", augment: bool = True):
        self.device = torch.device(device)
        self.num_classes = data.num_classes
        self.augment = augment
        self.splits = {
            name: (
                self._images(getattr(data, f"x_{name}")),
                torch.as_tensor(getattr(data, f"y_{name}"), device=self.device),
            )
            for name in ("train", "val", "test")
        }
        shape = (1, 3, 1, 1)
        self.mean = torch.tensor(data.mean, device=self.device).view(shape) * 255.0
        self.std = torch.tensor(data.std, device=self.device).view(shape) * 255.0
        self.resolution = int(data.x_train.shape[1])

    def _images(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), device=self.device)

    def size(self, split: str) -> int:
        return len(self.splits[split][1])

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std

    def train_stream(self, batch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless shuffled, augmented training batches (drop-last within each epoch)."""
        x_all, y_all = self.splits["train"]
        n = len(y_all)
        if batch_size > n:
            raise ValueError(f"batch size {batch_size} exceeds the {n} training images")
        gen = torch.Generator(device="cpu").manual_seed(seed)
        while True:
            order = torch.randperm(n, generator=gen).to(self.device)
            for start in range(0, n - batch_size + 1, batch_size):
                idx = order[start : start + batch_size]
                x = self.normalise(x_all[idx])
                yield (self._augment(x, gen) if self.augment else x), y_all[idx]

    def fixed_batches(
        self, split: str, batch_size: int, count: int | None = None, seed: int | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``count`` batches of ``split`` (all of it when ``None``), in order or in a seeded random order."""
        x_all, y_all = self.splits[split]
        n = len(y_all)
        order = torch.arange(n) if seed is None else torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        order = order.to(self.device)
        starts = list(range(0, n, batch_size))[: count if count is not None else None]
        return [(self.normalise(x_all[order[s : s + batch_size]]), y_all[order[s : s + batch_size]]) for s in starts]

    def _augment(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, c, h, w = x.shape
        pad = max(1, h // 8)
        flip = (torch.rand(b, generator=gen) < 0.5).to(self.device).view(b, 1, 1, 1)
        x = torch.where(flip, x.flip(3), x)
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(self.device).view(b, 1, 1, 1)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(self.device).view(b, 1, 1, 1)
        rows = (torch.arange(h, device=self.device).view(1, 1, h, 1) + dy).expand(b, c, h, w + 2 * pad)
        cols = (torch.arange(w, device=self.device).view(1, 1, 1, w) + dx).expand(b, c, h, w)
        return padded.gather(2, rows).gather(3, cols)
