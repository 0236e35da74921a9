"""Several seeds' networks in one pass: K random front-ends of one architecture run as one network with K× channels.

A study draws one random network per run, all of one architecture. At batch 1
on CPU the narrow front-ends are overhead-bound (temporal small: ~0.4 ms per
clip), so running K networks as ONE network with K× channels amortises the
per-call overhead:

- a convolution that reads the input (every first layer; every branch of the
  timbral / temporal / vertical / frame-level-many front-ends) sees the same input
  for every seed: its K filter banks are concatenated along output channels (one
  conv with K·C_out filters, seed-major);
- a convolution that reads a previous map runs per seed on that seed's channels
  (the arithmetic of a grouped convolution, ``groups=K``: oneDNN's grouped
  kernels measured 0.4–1.4× the K separate calls, with no stable rule); where
  branches were concatenated before it (frame-level-many's five front-end maps,
  branch-major in the stacked map) each seed's channels are gathered with
  ``index_select``;
- activations, pooling, residual sums and channel means run once on the stacked
  tensors, through the front-end's own optimized formulation (``Frontend.forward``);
- seed k's features are the means of channels ``k·C … (k+1)·C − 1`` of every map,
  in ``feature_layers`` order: the separate networks' features within float
  tolerance (tested in ``tests/test_stacked.py``; in practice bit-identical).

Stacking does not pay everywhere: a 1-input-channel convolution gets slower
per channel past a few hundred channels on CPU (VGG's first 3×3 layer already
past 32), and wide front-ends are convolution-bound. Where it pays was measured
per front-end, width and K (``scripts/bench_randomcnn.py --seeds K``) and is
encoded in :func:`stack_size`; :func:`fewshot.frontends.extract_many.extract_features_many`
stacks that many networks per pass and runs the rest one at a time.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from ..exceptions import ParameterError
from ._base import Frontend
from ._spectrogram import VGG, CnnMusic, Vertical
from ._waveform import FrameLevel, FrameLevelMany, SampleLevel
from .tuning import tuning_enabled

__all__ = ["StackedFrontend", "stack_frontends", "stacking_problem", "stack_size", "MAX_SEEDS"]

#: Most networks stacked in one pass (activation memory grows with K).
MAX_SEEDS = 8

#: The registered random CNNs that stack (exact classes: a user subclass may change the computation).
_STACKABLE = (SampleLevel, FrameLevel, FrameLevelMany, Vertical, CnnMusic, VGG)

#: Where stacking was measured faster on CPU (float32, batch 1, one thread, 5-s clips, K = 3, 5, 8; per
#: network-clip against one optimized network at a time): front-end name → (largest filter count F, largest
#: K·F per pass). Measured 1.1–3.1× inside these limits, ≤ 1.0× (or within noise) outside them; front-ends
#: not listed (sample_level, timbral, vertical_7x86, vgg: 0.6–1.1×) never stack. Re-measured for the
#: frame-level networks once they ran time-major with grouped back-end convolutions (December 2026, AVX2 host).
_STACK_LIMITS = {
    "temporal": (48, 144),          # F 12: 2.2-3.1x (K 3-8); F 24: 1.7-1.9x; F 48: 1.4x at K 3, 0.5x at K 5
    "timbral_temporal": (12, 96),   # F 6: 1.8-2.3x; F 12: 1.1-1.2x; F 48: 0.9x
    "timbral_time": (12, 96),       # as timbral_temporal
    "frame_level_many": (20, 160),  # F 20: 1.2-1.4x (time-major: 1.03-1.18x); F 40: 0.9-1.2x; F 80: 0.7x
    "frame_level": (40, 320),       # F 40: 1.1-1.25x (time-major: 1.13-1.17x); F 80: 1.0x
    "vertical_7x96": (160, 1280),   # F 160: 1.2x; F 400-1000: 1.05x
}


#: With tuning on (the default), every narrow network is also offered for stacking up to these limits (largest
#: F, largest K·F per pass; beyond F ≈ 50 stacking measured ≤ 1.0× for every front-end but vertical_7x96, which
#: keeps its own limits) and :func:`~fewshot.frontends.extract_many.extract_features_many` measures on the
#: first clip whether one stacked pass beats K single ones on the machine at hand.
_TUNED_LIMITS = (64, 512)
#: With tuning on, a network with one-channel spectrogram filters (vertical, timbral) is offered for stacking at
#: any width, up to this many filters per pass (K·F), again measured per machine: with the Winograd
#: formulations a stacked pass of 3 measured 0.96–1.44× three single ones for vertical_7x86 and 1.01–1.26× for
#: the wide timbral ones (one AVX2 core, two runs, and two threads; December 2026, docs/performance.md). The
#: temporal-only front-end is not: 0.84–1.03× at F 256.
_TUNED_SHALLOW_TOTAL = 12_000


def _deep_convs(fe: Frontend) -> set[str]:
    """Names of the convolutions that read a previous map of the network (they run per seed)."""
    if type(fe) is SampleLevel:
        return {f"convs.{i}" for i in range(len(fe.convs))}
    if type(fe) in (FrameLevel, FrameLevelMany):
        return {"backend.b1", "backend.b2", "backend.b3"}
    if type(fe) is VGG:
        return {f"convs.{i}" for i in range(1, len(fe.convs))}
    return set()  # Vertical, CnnMusic: every conv reads the input


def stacking_problem(frontends: Sequence[Frontend]) -> str | None:
    """Why ``frontends`` cannot be stacked into one network, or None when they can.

    The rule: one to :data:`MAX_SEEDS` registered random CNNs of one class, width,
    filter count and input settings (same parameter shapes), with distinct seeds.
    """
    problem = _list_problem(frontends)
    if problem is not None:
        return problem
    first = frontends[0]
    for i, fe in enumerate(frontends):
        if type(fe) not in _STACKABLE:
            return (f"frontends[{i}] ({fe.name!r}, {type(fe).__name__}) is not a registered random CNN; only "
                    f"{', '.join(c.__name__ for c in _STACKABLE)} networks stack")
    settings = ("name", "width", "filters", "input", "sr", "spectrogram", "seconds", "min_length")
    for i, fe in enumerate(frontends[1:], 1):
        if type(fe) is not type(first):
            return f"frontends[{i}] is a {type(fe).__name__}, frontends[0] a {type(first).__name__}; all must match"
        for attr in settings:
            if getattr(fe, attr) != getattr(first, attr):
                return (f"frontends[{i}] has {attr}={getattr(fe, attr)!r}, frontends[0] {attr}="
                        f"{getattr(first, attr)!r}; all must share architecture and input settings")
        shapes = [(n, tuple(p.shape)) for n, p in fe.named_parameters()]
        if shapes != [(n, tuple(p.shape)) for n, p in first.named_parameters()]:
            return f"frontends[{i}] has other layer shapes than frontends[0]; all must share one architecture"
    seeds = [fe.seed for fe in frontends]
    if len(set(seeds)) != len(seeds):
        return f"frontends must have distinct seeds (one network each); got seeds {seeds}"
    if len(frontends) > MAX_SEEDS:
        return f"at most {MAX_SEEDS} networks stack in one pass; got {len(frontends)}"
    return None


def _list_problem(frontends: object) -> str | None:
    """Why ``frontends`` is not a non-empty sequence of front-ends, or None."""
    if isinstance(frontends, Frontend) or not isinstance(frontends, Sequence) or not frontends:
        got = f"an empty {type(frontends).__name__}" if isinstance(frontends, Sequence) else type(frontends).__name__
        return f"frontends must be a non-empty list of front-ends; got {got}"
    for i, fe in enumerate(frontends):
        if not isinstance(fe, Frontend):
            return f"frontends[{i}] must be a Frontend; got {type(fe).__name__}"
    return None


class _PerSeedConv(nn.Module):
    """K convolutions, each reading its own seed's channels of a stacked map; outputs concatenated seed-major.

    The same arithmetic as a grouped convolution (``groups=K``), run as K calls on
    channels-first maps: there oneDNN's grouped convolutions were measured from 0.4×
    to 1.4× the K separate calls depending on channels and length (no stable rule),
    the K calls never slower than the separate networks. On time-major maps (the
    frame-level back-ends, :func:`~fewshot.frontends._waveform.conv1d_tm`) the grouped
    convolution is used: the K calls would each copy a channel slice first.

    Parameters
    ----------
    convs : list of nn.Conv1d or nn.Conv2d
        One per seed (copied).
    index : Tensor [shape=(K, C_in)], optional
        Channels of the stacked input that seed k reads, in its conv's input order; default
        ``k·C_in … (k+1)·C_in − 1`` (seed-major input).
    """

    def __init__(self, convs: list[nn.Module], index: torch.Tensor | None = None) -> None:
        super().__init__()
        self.convs = nn.ModuleList(copy.deepcopy(c) for c in convs)
        self.in_channels = convs[0].in_channels
        self.register_buffer("index", index, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.in_channels
        parts = [x.narrow(1, k * c, c) if self.index is None else x.index_select(1, self.index[k])
                 for k in range(len(self.convs))]
        return torch.cat([conv(h) for conv, h in zip(self.convs, parts, strict=True)], 1)


def _concat_conv(convs: list[nn.Module]) -> nn.Module:
    """One conv with every seed's filters (seed-major): the convs of a layer that reads the shared input."""
    c0 = convs[0]
    out = type(c0)(c0.in_channels, c0.out_channels * len(convs), c0.kernel_size, stride=c0.stride,
                   padding=c0.padding, dilation=c0.dilation, device="meta").to_empty(device=c0.weight.device)
    with torch.no_grad():
        out.weight.copy_(torch.cat([c.weight for c in convs]))
        out.bias.copy_(torch.cat([c.bias for c in convs]))
    return out.requires_grad_(False)


class StackedFrontend(nn.Module):
    """K random front-ends of one architecture run as one network with K× channels (build with
    :func:`stack_frontends`).

    Attributes
    ----------
    frontends : tuple of Frontend
        The separate networks, in order (not modified).
    n_seeds : int
        K.
    net : Frontend
        A copy of ``frontends[0]`` whose convolutions carry all K networks' filters.
    """

    def __init__(self, frontends: Sequence[Frontend]) -> None:
        super().__init__()
        self.frontends = tuple(frontends)  # a tuple: not registered as submodules (the weights live in net)
        self.n_seeds = k = len(self.frontends)
        first = self.frontends[0]
        # copy the module tree but not its weights (every conv is replaced below); drop per-instance caches
        memo = {id(t): t for t in [*first.parameters(), *first.buffers()]}
        net = copy.deepcopy(first, memo)
        net.__dict__.pop("_mel_weights", None)
        deep = _deep_convs(first)
        for name, conv in list(first.named_modules()):
            if not isinstance(conv, nn.Conv1d | nn.Conv2d):
                continue
            parts = [fe.get_submodule(name) for fe in self.frontends]
            if name not in deep:
                stacked = _concat_conv(parts)
            elif type(first) is FrameLevelMany and name == "backend.b1":
                # the five front-end maps are concatenated branch-major ([branch][seed][F]); seed k reads
                # channels branch·K·F + k·F + f of it, in (branch, f) order
                order = torch.arange(len(first.KERNELS) * k * first.filters).view(len(first.KERNELS), k, -1)
                stacked = _PerSeedConv(parts, order.transpose(0, 1).reshape(k, -1))
            else:
                stacked = _PerSeedConv(parts)
            parent, _, attr = name.rpartition(".")
            setattr(net.get_submodule(parent) if parent else net, attr, stacked)
        net.precision = "float32"
        if deep:
            net.gemm = False  # the GEMM formulations of _fast.py read one dense weight per layer: keep the conv path
        self.net = net.eval()

    @property
    def sizes(self) -> dict[str, int]:
        """Channels per feature layer of ONE network, in order."""
        return self.frontends[0].layer_sizes

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """Per seed, the feature maps ``[batch, channels, ...]`` of a batch (views into the stacked maps)."""
        maps = self.net.forward(x)
        return [[m.narrow(1, s * c, c) for m, c in zip(maps, self.sizes.values(), strict=True)]
                for s in range(self.n_seeds)]

    def features(self, x: torch.Tensor, *, layers: Sequence[str] | None = None) -> torch.Tensor:
        """Feature vectors ``[n_seeds, batch, n_features]``: seed k's are those of ``frontends[k]``."""
        names = self.frontends[0]._layer_names(layers)
        maps = self.net.forward(x)
        b, k = x.shape[0], self.n_seeds
        # means over every stacked map at once, then [batch, K, C] per layer → seed k's row is contiguous
        means = [(m if m.dim() == 2 else m.flatten(2).mean(-1)).view(b, k, c)
                 for (n, c), m in zip(self.sizes.items(), maps, strict=True) if n in names]
        return torch.cat(means, 2).transpose(0, 1)


def stack_frontends(frontends: Sequence[Frontend]) -> StackedFrontend:
    """K random front-ends of one architecture (different seeds) as one network with K× channels.

    Parameters
    ----------
    frontends : sequence of Frontend
        Registered random CNNs (:func:`fewshot.frontends.create_frontend`) of one
        class, width / filters and input settings, with distinct seeds; at most
        :data:`MAX_SEEDS`.

    Returns
    -------
    StackedFrontend
        ``stacked.features(x)[k]`` equals ``frontends[k].features(x)`` within float tolerance.

    Raises
    ------
    ParameterError
        The front-ends do not stack (:func:`stacking_problem` says why).
    """
    problem = stacking_problem(frontends)
    if problem is not None:
        raise ParameterError(f"cannot stack front-ends: {problem}")
    return StackedFrontend(frontends)


def stack_size(frontend: Frontend, device: str | torch.device = "cpu", precision: str = "float32") -> int:
    """How many networks like ``frontend`` (other seeds) to stack per pass at most; 1 means one at a time.

    With tuning on (:mod:`fewshot.frontends.tuning`, the default): also up to K·F ≤
    512 for every narrow network (F ≤ 64), up to K·F ≤ 12,000 at any width for the
    networks with one-channel spectrogram filters (vertical, timbral), and
    :func:`~.extract_many.extract_features_many` measures whether stacking pays on this machine.
    With tuning off, the limits measured on the development CPUs in ``_STACK_LIMITS`` (CPU, float32): stacking pays
    for the narrow temporal, timbral-temporal, frame-level and 7×96 vertical
    front-ends, up to a total filter count K·F per pass; wide front-ends are
    convolution-bound and some layers get slower per channel when stacked. Not
    measured on CUDA (where batches already fill the device) or in bfloat16 (whose
    GEMM paths read one dense weight per layer): 1 there.
    """
    if type(frontend) not in _STACKABLE or precision != "float32" or torch.device(device).type != "cpu" \
            or not frontend.filters:
        return 1
    limits = _STACK_LIMITS.get(frontend.name)
    if tuning_enabled():  # also offer every narrow network; extract_features_many measures whether it pays
        limits = tuple(max(a, b) for a, b in zip(limits or (0, 0), _TUNED_LIMITS, strict=True))
        if type(frontend) is Vertical or type(frontend) is CnnMusic and len(frontend.timbral):
            limits = (max(limits[0], frontend.filters), max(limits[1], _TUNED_SHALLOW_TOTAL))
    if limits is None:
        return 1
    max_filters, max_total = limits
    return 1 if frontend.filters > max_filters else max(1, min(MAX_SEEDS, max_total // frontend.filters))
