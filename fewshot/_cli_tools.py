"""The ``fewshot`` commands that export or inspect rather than run experiments: ``extract``, ``embed``,
the listings (``datasets``, ``frontends``, ``classifiers``, ``models``) and ``cache info|prune``.

Registered on :data:`fewshot.cli.app` when :mod:`fewshot.cli` imports this module, after its own commands.
"""

from __future__ import annotations

from pathlib import Path

import typer

from .cli import CacheOpt, SecondsOpt, _listing, _split, app, cache_app, err_console, out_console
from .exceptions import FewShotError

__all__ = ["extract", "embed", "datasets", "frontends", "classifiers", "models", "cache_info", "cache_prune"]


# ----------------------------------------------------------------- export
@app.command()
def extract(
    frontend: str = typer.Option(..., "--frontend", "-f", help="Front-end name or path/to/file.py:Name."),
    dataset: str = typer.Option("synth", "--dataset", "-d", help="Folder, CSV file, LOADER:PATH or synth[:...]."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .npz (X, y, classes, paths, folds, layers)."),
    width: str = typer.Option("small", "--width", help="small or large."),
    filters: int = typer.Option(None, "--filters", help="Override the filter count F."),
    layers: str = typer.Option(None, "--layers", help="Comma-separated feature layers (default: all)."),
    run: int = typer.Option(0, "--run", help="Random network of this run (same weights as randomcnn run r)."),
    seed: int = typer.Option(0, "--seed", help="The user seed; the network seed derives from it and --run."),
    seconds: float = SecondsOpt, device: str = typer.Option("auto", "--device"), cache_dir: str = CacheOpt,
) -> None:
    """Export front-end features of every clip of a dataset for use elsewhere."""
    import numpy as np

    from .data.cache import ArrayCache
    from .data.datasets import load_dataset
    from .methods import parse_method, pipeline_name
    from .protocols.config import ExperimentConfig
    from .protocols.engine import resolve_device
    from .protocols.evaluate import Context

    if width not in ("small", "large"):
        raise FewShotError(f"--width must be small or large; got {width!r}")
    cfg = ExperimentConfig(protocol="randomcnn", dataset=dataset, seed=seed, seconds=seconds)
    ds = load_dataset(dataset, seed=seed)
    ctx = Context(ds, cfg, ArrayCache(cache_dir), resolve_device(device), stack_runs=False)  # one run only
    from .frontends import frontend_has_width

    w = (f"f{filters}" if filters else width) if frontend_has_width(frontend) else None
    spec = parse_method(pipeline_name(frontend, w, "knn"))
    index = np.arange(len(ds))
    fe = ctx.frontend(spec, run)
    if layers:
        from .frontends.extract import extract_features

        inputs = [ctx.log_mel(int(i), fe.spectrogram) if fe.input == "logmel" else ctx.waveform(int(i), fe.sr)
                  for i in index]
        X = extract_features(fe, inputs, device=ctx.device, layers=_split(layers))
        chosen = _split(layers)
    else:
        X = ctx.features(spec, run, index)
        chosen = list(getattr(fe, "feature_layers", ()))
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, X=X, y=ds.y, classes=np.array(ds.classes), paths=np.array([c.path for c in ds.clips]),
                        folds=np.array([c.fold for c in ds.clips]), layers=np.array(chosen),
                        frontend=np.array(fe.identity))
    err_console.print(f"wrote {X.shape[0]} × {X.shape[1]} features of {fe.identity} to {out}", soft_wrap=True)


@app.command()
def embed(
    files: list[Path] = typer.Argument(..., help="Audio files (any rate; resampled to 16 kHz)."),
    model: str = typer.Option("msd_musicnn", "--model", help="mtt_musicnn, msd_musicnn, mtt_vgg or msd_vgg."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for <stem>.taggram.npy and <stem>.embedding.npy."),
    padding: str = typer.Option("reflect", "--padding", help="STFT edge padding: reflect (as trained) or constant."),
) -> None:
    """Pretrained musicnn taggrams (patches × tags) and penultimate embeddings (patches × dims) per file."""
    from .pretrained.embed import embed_files

    written = embed_files(model, [str(f) for f in files], out, padding=padding)
    err_console.print(f"wrote {len(written)} files to {out}")


# ----------------------------------------------------------------- listings
@app.command()
def datasets() -> None:
    """List dataset loaders: name, layout expected, citation."""
    from .data.datasets import DATASETS

    _listing("datasets", ["name", "layout expected", "citation"],
             [[e.name, e.meta.get("layout", ""), e.meta.get("citation", "")] for e in DATASETS])


@app.command()
def frontends() -> None:
    """List front-ends: input type, widths and feature sizes."""
    from .frontends import list_frontends

    def fmt(value):
        if isinstance(value, dict):
            return ", ".join(f"{k} {v}" for k, v in value.items()) if value else "-"
        return "-" if value is None else str(value)

    rows = list_frontends()
    _listing("front-ends", list(rows[0].keys()), [[fmt(v) for v in r.values()] for r in rows])


@app.command()
def classifiers() -> None:
    """List classifiers and their hyper-parameter grids."""
    from .classifiers import CLASSIFIERS

    _listing("classifiers", ["name", "description"], [[e.name, e.description] for e in CLASSIFIERS])


@app.command()
def models() -> None:
    """List trainable models."""
    from .training import MODELS

    _listing("models", ["name", "description"], [[e.name, e.description] for e in MODELS])


# ----------------------------------------------------------------- cache
@cache_app.command("info")
def cache_info(cache_dir: str = CacheOpt) -> None:
    """Entries and sizes per kind of cached array."""
    from .data.cache import ArrayCache

    cache = ArrayCache(cache_dir)
    info = cache.info()
    out_console.print(f"cache: {cache.root}")
    out_console.print(info)


@cache_app.command("prune")
def cache_prune(
    cache_dir: str = CacheOpt,
    older_than: float = typer.Option(None, "--older-than", help="Only entries not used for this many days."),
) -> None:
    """Delete cached entries (all, or those older than --older-than days)."""
    from .data.cache import ArrayCache

    n, size = ArrayCache(cache_dir).prune(older_than_days=older_than)
    out_console.print(f"removed {n} entries, {size / 1e6:.1f} MB")
