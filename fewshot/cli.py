"""The ``fewshot`` command line (Typer + rich).

A user mistake gives one line on stderr (which input, what is wrong, what to do)
and exit status 2, never a traceback; results already written stay written, and
running the same command again resumes.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer
from rich.console import Console

from .exceptions import FewShotError

_IMPORTED = time.perf_counter()
#: When the ``fewshot`` command started (set by :func:`main`): ``--dry-run`` counts the start-up in its estimate.
_STARTED: float | None = None

app = typer.Typer(
    name="fewshot",
    help="Honest statistics for audio classification with little labelled data.\n\n"
    "Examples:\n\n"
    "  fewshot run --n 1,5,10 --quick            # few-data training on the built-in dataset\n\n"
    "  fewshot randomcnn                          # random-weight CNN front-ends + SVM\n\n"
    "  fewshot report runs/run-synth-*            # tables, paired tests and plots",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
cache_app = typer.Typer(help="Inspect or prune the on-disk cache of decoded audio, log-mels and features.")
app.add_typer(cache_app, name="cache")

# Wide enough for the tables when output goes to a file or CI log (rich assumes 80 columns there).
out_console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)

# ----------------------------------------------------------------- shared options
DatasetOpt = typer.Option(None, "--dataset", "-d", help="Folder, CSV file, LOADER:PATH or synth[:k=v,...].")
SeedOpt = typer.Option(None, "--seed", help="The only seed; every other seed derives from it. [default: 0]")
DeviceOpt = typer.Option(None, "--device", help="auto, cpu or cuda. [default: auto]")
OutOpt = typer.Option(None, "--out", "-o", help="Run folder. [default: runs/<protocol>-<dataset>-<hash>]")
ProtocolOpt = typer.Option(None, "--protocol", help="TOML experiment definition (see protocols/); options win.")
CacheOpt = typer.Option(None, "--cache-dir", help="Cache folder. [default: $FEWSHOT_CACHE_DIR or ~/.cache/fewshot]")
RunsOpt = typer.Option(None, "--runs", help="Runs per n (default: 20 for n≤2, 10 for n≤10, 5 above).")
FoldsOpt = typer.Option(None, "--folds", help="Comma-separated test folds. [default: all]")
CapOpt = typer.Option(None, "--cap/--no-cap", help="Cap n at the size of a smaller class instead of failing.")
OnErrorOpt = typer.Option(None, "--on-error", help="fail or skip unreadable/silent clips. [default: fail]")
SecondsOpt = typer.Option(None, "--seconds", help="Crop or repeat-pad every clip to this length.")
FoldsCountOpt = typer.Option(None, "--folds-count", help="Folds to make where the dataset has none. [default: 5]")
ReportOpt = typer.Option(True, "--report/--no-report", help="Write the report and print the table at the end.")
DryRunOpt = typer.Option(False, "--dry-run", help="Print the units it would run and a time estimate from a short "
                         "calibration on this machine; run nothing.")
PretrainedOpt = typer.Option(None, "--pretrained", help="NAME=PATH: a fewshot pretrain checkpoint (or vggish=FILE, "
                             "torchvggish weights) for methods finetune:NAME, protonet:NAME, probe:NAME+clf. "
                             "Repeatable.")
ExecutorOpt = typer.Option("local", "--executor", help="local (this process) or dask (see docs/scaling.md).")
SchedulerOpt = typer.Option(None, "--scheduler", help="Dask scheduler address tcp://HOST:PORT (--executor dask).")
WorkersOpt = typer.Option(None, "--workers", help="Start a local Dask cluster of N workers (--executor dask).")
ThreadsOpt = typer.Option(None, "--threads", help="Torch/BLAS threads per unit (changes speed, not results). "
                          "[default: all cores local; cores ÷ workers with dask]")


def _split(value: str | None) -> list[str] | None:
    from .protocols.config import split_list

    return split_list(value)


def _run_protocol(defaults, protocol_file, cli: dict, *, report: bool, executor=None, dry_run: bool = False) -> None:
    from .protocols.config import QUICK, load_protocol_file, resolve
    from .protocols.engine import run_experiment

    toml = load_protocol_file(protocol_file) if protocol_file else None
    cfg = resolve(defaults, toml, cli)
    if cfg.quick:
        err_console.print("[bold yellow]--quick[/bold yellow]: " + ", ".join(f"{k}: {v}" for k, v in QUICK.items()))
    if dry_run:
        from .protocols.planning import format_plan, plan_experiment

        out_console.print(format_plan(plan_experiment(cfg, started=_STARTED)), highlight=False, soft_wrap=True)
        return
    run_dir = run_experiment(cfg, console=err_console, executor=executor)
    if report:
        _report([run_dir], run_dir / "report")


def _report(run_dirs: list[Path], out_dir: Path, test: str = "paired") -> None:
    from .results.report import format_table, write_report

    written = write_report(run_dirs, out_dir, test=test)
    out_console.print(format_table(written["summary"]))
    err_console.print(f"report: {written['report']}", soft_wrap=True)
    for plot in written.get("plots", []):
        if str(plot).endswith(".png"):
            err_console.print(f"plot: {plot}", soft_wrap=True)


def _listing(title: str, columns: list[str], rows: list[list[str]]) -> None:
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*[str(x) for x in r])
    out_console.print(table)


# ----------------------------------------------------------------- protocols
@app.command()
def run(
    dataset: str = DatasetOpt,
    n: str = typer.Option(None, "--n", help="Clips per class, comma-separated ints or 'all'. [default: 1,5,10]"),
    method: str = typer.Option(None, "--method", "-m",
                               help="Methods: models (protonet, vgg, timbre, sbcnn, random) and pipelines "
                               "(mfcc+knn, vgg-small+svm). [default: protonet,vgg,timbre,mfcc+knn,random]"),
    quick: bool = typer.Option(None, "--quick/--full", help="Smoke run: 1 fold, 2 runs, 20 epochs, narrow nets."),
    epochs: int = typer.Option(None, "--epochs", help="Epochs of vgg/timbre/sbcnn training (last model kept); protonet "
                                "stops by --patience, capped by --max-epochs. [default: 200]"),
    patience: int = typer.Option(None, "--patience", help="protonet: stop after this many epochs without a "
                                 "training-accuracy gain. [default: 200]"),
    max_epochs: int = typer.Option(None, "--max-epochs", help="protonet: epoch cap. [default: 1000]"),
    narrow: bool = typer.Option(None, "--narrow/--standard", help="Narrow backbones (vgg 16, protonet 16 "
                                "filters) for CPU budgets; --quick implies it."),
    runs: int = RunsOpt, folds: str = FoldsOpt, seed: int = SeedOpt, cap: bool = CapOpt,
    device: str = DeviceOpt, out: str = OutOpt, protocol: Path = ProtocolOpt, cache_dir: str = CacheOpt,
    on_error: str = OnErrorOpt, seconds: float = SecondsOpt, folds_count: int = FoldsCountOpt,
    report: bool = ReportOpt, executor: str = ExecutorOpt, scheduler: str = SchedulerOpt,
    workers: int = WorkersOpt, threads: int = ThreadsOpt, pretrained: list[str] = PretrainedOpt,
    dry_run: bool = DryRunOpt,
) -> None:
    """Few-data training: n labelled clips per class, no validation data, paired over methods.

    Example: fewshot run --dataset urbansound8k:/data/UrbanSound8K --n 1,5,10,100 --method protonet,vgg,mfcc+knn
    """
    from .protocols.config import ExperimentConfig

    defaults = ExperimentConfig(protocol="run", n=[1, 5, 10],
                                methods=["protonet", "vgg", "timbre", "mfcc+knn", "random"])
    cli = dict(dataset=dataset, n=_split(n), methods=_split(method), quick=quick, epochs=epochs,
               patience=patience, max_epochs=max_epochs, narrow=narrow, runs=runs, folds=_split(folds), seed=seed,
               cap=cap, device=device, out=out, cache_dir=cache_dir, on_error=on_error, seconds=seconds,
               n_folds=folds_count)
    _register_pretrained(pretrained)
    _run_protocol(defaults, protocol, cli, report=report,
                  executor=_executor(executor, scheduler, workers, threads), dry_run=dry_run)


@app.command()
def randomcnn(
    dataset: str = DatasetOpt,
    frontend: str = typer.Option(None, "--frontend", "-f", help="Front-ends (see `fewshot frontends`), or "
                                 "path/to/file.py:Name. [default: sample_level,timbral,vertical_7x86,mfcc]"),
    width: str = typer.Option(None, "--width", help="small or large. [default: small]"),
    filters: int = typer.Option(None, "--filters", help="Override the filter count F of every front-end."),
    classifier: str = typer.Option(None, "--classifier", "-c", help="svm, elm, knn, logreg. [default: svm]"),
    method: str = typer.Option(None, "--method", "-m", help="Full method names instead of --frontend × "
                               "--classifier (e.g. vgg-small+svm)."),
    n: str = typer.Option(None, "--n", help="Clips per class, or 'all' for the whole pool. [default: all]"),
    runs: int = typer.Option(None, "--runs", help="Random networks per front-end. [default: 3]"),
    folds: str = FoldsOpt, seed: int = SeedOpt, cap: bool = CapOpt, device: str = DeviceOpt,
    out: str = OutOpt, protocol: Path = ProtocolOpt, cache_dir: str = CacheOpt, on_error: str = OnErrorOpt,
    seconds: float = SecondsOpt, folds_count: int = FoldsCountOpt, report: bool = ReportOpt,
    executor: str = ExecutorOpt, scheduler: str = SchedulerOpt, workers: int = WorkersOpt,
    threads: int = ThreadsOpt, pretrained: list[str] = PretrainedOpt, dry_run: bool = DryRunOpt,
) -> None:
    """Random-weight CNN front-ends + shallow classifiers: benchmark front-ends without training them.

    Example: fewshot randomcnn -d gtzan:/data/GTZAN --frontend vgg,timbral,mfcc --width large -c svm,elm
    """
    from .protocols.config import ExperimentConfig, expand_pipelines

    methods = _split(method)
    if frontend or classifier or width or filters:
        fes = _split(frontend) or ["sample_level", "timbral", "vertical_7x86", "mfcc"]
        w = f"f{filters}" if filters else (width or "small")
        if w not in ("small", "large") and not w.startswith("f"):
            raise FewShotError(f"--width must be small or large; got {width!r}")
        methods = (methods or []) + expand_pipelines(fes, _split(classifier) or ["svm"], w)
    defaults = ExperimentConfig(protocol="randomcnn", n=["all"], runs=3, methods=expand_pipelines(
        ["sample_level", "timbral", "vertical_7x86", "mfcc"], ["svm"], "small"))
    cli = dict(dataset=dataset, methods=methods, n=_split(n), runs=runs, folds=_split(folds), seed=seed,
               cap=cap, device=device, out=out, cache_dir=cache_dir, on_error=on_error, seconds=seconds,
               n_folds=folds_count)
    _register_pretrained(pretrained)
    _run_protocol(defaults, protocol, cli, report=report,
                  executor=_executor(executor, scheduler, workers, threads), dry_run=dry_run)


def _register_pretrained(items: list[str] | None) -> None:
    from .training.checkpoints import parse_pretrained_option, register_pretrained

    for item in items or []:
        register_pretrained(*parse_pretrained_option(item))


@app.command()
def pretrain(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Source dataset: folder, CSV, LOADER:PATH or synth."),
    model: str = typer.Option("vgg", "--model", help="A trainable model (see `fewshot models`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint file to write (tensors + JSON config)."),
    folds: str = typer.Option(None, "--folds", help="Train on the clips of these folds only. [default: all clips]"),
    epochs: int = typer.Option(200, "--epochs", help="Training epochs (the last model is kept)."),
    narrow: bool = typer.Option(False, "--narrow/--standard", help="Narrow backbones for CPU budgets."),
    seed: int = typer.Option(0, "--seed"), device: str = typer.Option("auto", "--device"),
    cache_dir: str = CacheOpt,
) -> None:
    """Train a model on a source dataset and save it for finetune:NAME / protonet:NAME / probe:NAME+clf.

    Example: fewshot pretrain -d synth --model vgg --out vgg-synth.pt; then
    fewshot run -d D --pretrained mine=vgg-synth.pt --method finetune:mine,probe:mine+svm
    """
    from .protocols.engine import resolve_device
    from .training.transfer import pretrain as _pretrain

    path = _pretrain(dataset, model, out, folds=_split(folds), epochs=epochs, seed=seed, narrow=narrow,
                     device=resolve_device(device), cache_dir=cache_dir)
    err_console.print(f"wrote {path} (model {model}); use it with --pretrained NAME={path}", soft_wrap=True)


def _executor(executor: str, scheduler: str | None, workers: int | None, threads: int | None):
    from .protocols.executors import make_executor

    return make_executor(executor, scheduler=scheduler, workers=workers, threads=threads)


@app.command()
def status(run_dir: Path = typer.Argument(..., help="A run folder (runs/<protocol>-<dataset>-<hash>).")) -> None:
    """Progress of a run, going on or interrupted: units done / planned per method, last row, lock held."""
    from .protocols.status import format_status, run_status

    st = run_status(run_dir)
    for line in format_status(st):
        out_console.print(line, highlight=False, soft_wrap=True)
    if st["methods"]:
        _listing("units per method", ["method", "done", "planned"],
                 [[m, s["done"], "?" if s["planned"] is None else s["planned"]] for m, s in st["methods"].items()])


@app.command()
def resume(
    run_dir: Path = typer.Argument(..., help="A run folder to continue with its saved configuration."),
    report: bool = ReportOpt, executor: str = ExecutorOpt, scheduler: str = SchedulerOpt,
    workers: int = WorkersOpt, threads: int = ThreadsOpt, pretrained: list[str] = PretrainedOpt,
) -> None:
    """Continue an interrupted run from its saved config (only unfinished units run)."""
    from .protocols.engine import run_experiment
    from .protocols.status import saved_config

    _register_pretrained(pretrained)  # checkpoint names (finetune:NAME ...) are not part of the saved config
    cfg = saved_config(run_dir)
    run_experiment(cfg, console=err_console, executor=_executor(executor, scheduler, workers, threads))
    if report:
        _report([run_dir], run_dir / "report")


@app.command()
def report(
    run_dirs: list[Path] = typer.Argument(..., help="Run folders to report on together."),
    out: Path = typer.Option(None, "--out", "-o", help="Report folder. [default: <first run>/report]"),
    test: str = typer.Option("paired", "--test", help="paired (t-test + Wilcoxon, Holm) or nadeau-bengio."),
) -> None:
    """Tables (mean ± 95% CI), paired tests with Holm correction, confusion matrices and plots."""
    if test not in ("paired", "nadeau-bengio"):
        raise FewShotError(f"--test must be 'paired' or 'nadeau-bengio'; got {test!r}")
    for d in run_dirs:
        if not (d / "results.csv").is_file():
            raise FewShotError(f"{d}: no results.csv; expected a run folder written by fewshot run or randomcnn")
    _report(run_dirs, out or run_dirs[0] / "report", test=test)


# ----------------------------------------------------------------- extract, embed, listings, cache
# They live in _cli_tools, which registers them on app and cache_app after the commands above (the order
# of `fewshot --help`); fewshot.cli.<name> still finds them.
from . import _cli_tools  # noqa: E402


def __getattr__(name: str):
    if name in _cli_tools.__all__:
        return getattr(_cli_tools, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Entry point: run the app, turning user mistakes into one line and exit status 2.

    Click handles its own usage errors (exit 2); a :class:`FewShotError` from any
    command is printed as one line; anything else is a bug and keeps its traceback.
    """
    from ._allocator import keep_heap

    global _STARTED
    _STARTED = _IMPORTED
    keep_heap()  # large CPU tensors reuse the heap instead of being page-faulted anew (see _allocator)
    try:
        app()
    except FewShotError as err:
        err_console.print(f"[bold red]error:[/bold red] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted: results written so far are kept; run the same command to resume")
        sys.exit(130)
    except OSError as err:
        import errno

        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = err.filename or "the output or cache folder"
        err_console.print(f"[bold red]error:[/bold red] the disk is full (writing {where}); results written so far "
                          "are kept: free space or use --out/--cache-dir elsewhere, then run the same command",
                          highlight=False, soft_wrap=True)
        sys.exit(2)
