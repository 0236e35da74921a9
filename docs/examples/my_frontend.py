"""A user front-end for fewshot: a small random CNN on 16 kHz waveforms.

Use it as ``--frontend docs/examples/my_frontend.py:MyFrontend``. This file is
imported and run by fewshot: only use front-end files you trust.
"""

import torch
from torch import nn


class MyFrontend(nn.Module):
    """Two conv layers on the waveform; the features are the per-channel means of both maps (32 + 64)."""

    input = "waveform"  # or "logmel": [batch, 1, n_frames, 96] in the "elmarc" log-mel configuration
    sr = 16000  # clips arrive at this sample rate
    min_length = 400  # shorter clips are repeat-padded to 400 samples

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)  # a local generator: the seed fixes the weights
        self.conv1 = nn.Conv1d(1, 32, kernel_size=400, stride=160)  # 25 ms windows, 10 ms hop
        self.conv2 = nn.Conv1d(32, 64, kernel_size=3, padding=1)
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu", generator=g)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: waveforms [batch, n_samples] → feature maps [batch, 32, frames] and [batch, 64, frames]."""
        h1 = torch.relu(self.conv1(x.unsqueeze(1)))
        h2 = torch.relu(self.conv2(h1))
        return [h1, h2]
