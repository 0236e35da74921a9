"""Clips in parallel, one thread each (fewshot/frontends/parallel.py): every clip once, same features, measured."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from fewshot.frontends import FRONTENDS, create_frontend, tuning
from fewshot.frontends.extract import extract_features
from fewshot.frontends.extract_many import extract_features_many
from fewshot.frontends.parallel import run_parallel

CNNS = [n for n in FRONTENDS.names() if FRONTENDS.get(n).meta["widths"] is not None]
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    tuning.clear_tuned()
    yield
    torch.set_num_threads(before)
    tuning.set_tuning(True)


def test_run_parallel_calls_every_chunk_once_on_worker_threads_with_one_torch_thread():
    seen, lock = [], threading.Lock()

    def run(chunk):
        with lock:
            seen.append((tuple(chunk), threading.current_thread().name, torch.get_num_threads(),
                         torch.is_inference_mode_enabled()))
        time.sleep(0.002)

    with torch.inference_mode():
        run_parallel([[i] for i in range(9)], run, 2)
    assert sorted(c for c, *_ in seen) == [(i,) for i in range(9)]
    assert {name.startswith("fewshot-clip") for _, name, _, _ in seen} == {True}
    assert {n for _, _, n, _ in seen} == {1} and {m for *_, m in seen} == {True}
    assert torch.get_num_threads() == 2  # restored


def test_run_parallel_re_raises_the_first_error_and_restores_threads():
    def run(chunk):
        if chunk == [3]:
            raise ValueError("clip 3 is bad")

    with pytest.raises(ValueError, match="clip 3"):
        run_parallel([[i] for i in range(6)], run, 2)
    assert torch.get_num_threads() == 2


def test_one_worker_runs_in_order_on_this_thread():
    seen = []
    run_parallel([[2], [0], [1]], lambda c: seen.append((c[0], threading.current_thread().name)), 1)
    assert seen == [(2, threading.current_thread().name), (0, threading.current_thread().name),
                    (1, threading.current_thread().name)]


def _sleep(chunk):  # sleeping releases the GIL: two at once take the time of one
    time.sleep(0.004 * len(chunk) ** 1.5)


def test_run_in_batches_keeps_parallel_clips_where_they_are_faster():
    seen, lock = [], threading.Lock()

    def run(chunk):
        with lock:
            seen.append(chunk)

    tuning.run_in_batches(("batch", "sleepy"), range(20), run, batch_size=None, device=CPU, default=1,
                          probe=_sleep, parallel=True)
    workers, chunk = tuning.tuned_choices()[("parallel", "sleepy")]
    assert workers == 2 and chunk in (1, tuning.BATCH_CANDIDATE)
    assert sorted(i for c in seen for i in c) == list(range(20)) and all(len(c) == chunk for c in seen)


def test_run_in_batches_keeps_one_thread_at_a_time_where_parallel_is_not_faster():
    gate = threading.Lock()

    def serial(chunk):  # holds a lock: clips cannot overlap
        with gate:
            time.sleep(0.004 * len(chunk))

    tuning.run_in_batches(("batch", "serial"), range(20), lambda c: None, batch_size=None, device=CPU, default=1,
                          probe=serial, parallel=True)
    assert tuning.tuned_choices()[("parallel", "serial")][0] == 1


def test_refinement_on_real_clips_corrects_a_close_race_the_probes_got_wrong():
    """The probes cannot overlap (they hold a lock), so two at once reads no faster; the real clips do overlap.
    A small extraction leaves the race open; a large one refines it on its own clips, each run once."""
    gate, seen, lock = threading.Lock(), [], threading.Lock()

    def probe(chunk):
        with gate:
            time.sleep(0.003 * len(chunk) ** 1.5)  # superlinear: batches of one win

    def run(chunk):
        with lock:
            seen.append((tuple(chunk), threading.current_thread().name))
        time.sleep(0.003 * len(chunk) ** 1.5)

    key, pkey = ("batch", "lying-probe"), ("parallel", "lying-probe")
    tuning.run_in_batches(key, range(20), run, batch_size=None, device=CPU, default=1, probe=probe, parallel=True)
    assert tuning.tuned_choices()[pkey] == (1, 1)  # one at a time: two at once must be 5 % faster
    assert pkey in tuning._OPEN  # too few clips to refine: left open
    assert sorted(i for c, _ in seen for i in c) == list(range(20))
    seen.clear()
    tuning.run_in_batches(key, range(200), run, batch_size=None, device=CPU, default=1, probe=probe, parallel=True)
    assert tuning.tuned_choices()[pkey] == (2, 1) and pkey not in tuning._OPEN  # refined, then closed
    assert sorted(i for c, _ in seen for i in c) == list(range(200))
    refined = 5 * (1 + 2 + 2 * 2)  # five rounds: an untimed unit (1 clip; 2 at once) and a block of 2 clips, each
    assert all(name.startswith("fewshot-clip") for c, name in seen if c[0] >= refined)  # the rest: two at once


def test_refinement_of_the_batch_size_without_clips_in_parallel():
    """Without clips in parallel the batch-size race is the one refined: a fixed cost per call that the probes
    do not pay makes batches of four faster on the real clips."""
    sizes = []

    def run(chunk):
        sizes.append(len(chunk))
        time.sleep(0.001 + 0.002 * len(chunk))

    key = ("batch", "fixed-cost")
    tuning.run_in_batches(key, range(300), run, batch_size=None, device=CPU, default=1,
                          probe=lambda chunk: time.sleep(0.002 * len(chunk)), parallel=False)
    assert tuning.tuned_choices()[key] == tuning.BATCH_CANDIDATE and key not in tuning._OPEN
    assert sum(sizes) == 300 and sizes[-10:-1] == [tuning.BATCH_CANDIDATE] * 9  # 235 clips after refining


def test_refinement_back_to_one_at_a_time_runs_the_chosen_batch_size():
    """Leader two single clips at once, refined to one batch of four at a time: the rest runs in fours."""
    key, pkey = ("batch", "back"), ("parallel", "back")
    tuning._CHOICES.update({key: 4, pkey: (2, 1)})
    tuning._OPEN[pkey] = {"samples": {(2, 1): [], (1, 4): []}, "default": (1, 4), "rounds": 0}
    gate, sizes = threading.Lock(), []

    def run(chunk):  # clips cannot overlap, and each call has a fixed cost: batches of four one at a time win
        with gate:
            sizes.append(len(chunk))
            time.sleep(0.004 + 0.001 * len(chunk))

    tuning.run_in_batches(key, range(300), run, batch_size=None, device=CPU, default=1, probe=_sleep, parallel=True)
    assert tuning.tuned_choices()[pkey] == (1, 4) and pkey not in tuning._OPEN
    assert sum(sizes) == 300 and sizes[-10:-1] == [4] * 9  # 230 clips after refining


def test_a_clear_race_is_not_refined():
    tuning.run_in_batches(("batch", "clear"), range(200), lambda c: None, batch_size=None, device=CPU, default=1,
                          probe=_sleep, parallel=True)
    assert tuning.tuned_choices()[("parallel", "clear")][0] == 2 and not tuning._OPEN


@pytest.mark.parametrize("threads,parallel,size", [(1, True, None), (2, False, None), (2, True, 3)])
def test_parallel_is_not_measured_on_one_thread_without_leave_or_with_a_fixed_batch(threads, parallel, size):
    torch.set_num_threads(threads)
    tuning.run_in_batches(("batch", "no"), range(20), lambda c: None, batch_size=size, device=CPU, default=1,
                          probe=_sleep, parallel=parallel)
    assert ("parallel", "no") not in tuning.tuned_choices()


@pytest.fixture()
def always_parallel(monkeypatch):
    monkeypatch.setattr(tuning, "_parallel_time", lambda probe, clips, chunk, device: 0.0)


def _clips(fe, n=10, seed=0):
    """n clips: all but the last two of one length (enough to measure), those two longer (a second group)."""
    rng = np.random.default_rng(seed)
    short, long = (30, 45) if fe.input == "logmel" else (2500, 3100)
    if fe.name == "vgg":
        short, long = 1300, 1400
    return [(rng.normal(-40, 10, ((short if i < n - 2 else long), 96)) if fe.input == "logmel"
             else rng.normal(0, 0.1, short if i < n - 2 else long)).astype(np.float32) for i in range(n)]


@pytest.mark.parametrize("name", CNNS)
def test_parallel_extraction_equals_plain(name, always_parallel):
    fe = create_frontend(name, filters=4, seed=2)
    clips = _clips(fe, 10)
    got = extract_features(fe, clips)
    assert any(k[0] == "parallel" and v[0] == 2 for k, v in tuning.tuned_choices().items())
    np.testing.assert_allclose(got, extract_features(fe, clips, plain=True), rtol=1e-4, atol=1e-5)


def test_parallel_stacked_extraction_equals_one_network_at_a_time(always_parallel):
    fes = [create_frontend("timbral", filters=4, seed=s) for s in range(3)]
    clips = _clips(fes[0], 12)
    got = extract_features_many(fes, clips)
    tuning.set_tuning(False)
    for fe, g in zip(fes, got, strict=True):
        np.testing.assert_allclose(g, extract_features(fe, clips, plain=True), rtol=1e-4, atol=1e-5)


def test_progress_counts_every_clip_once_in_parallel(always_parallel):
    fe = create_frontend("sample_level", filters=4, seed=0)
    calls = []
    extract_features(fe, _clips(fe, 12), progress=lambda done, total: calls.append((done, total)))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and calls[-1] == (12, 12)


def test_front_ends_not_marked_thread_safe_never_run_in_parallel(always_parallel):
    fe = create_frontend("mfcc")
    assert not fe.thread_safe
    extract_features(fe, [np.random.default_rng(0).normal(0, 0.1, 4000).astype(np.float32) for _ in range(10)])
    assert not any(k[0] == "parallel" for k in tuning.tuned_choices())


class _FakeStacked:
    """A stacked network taking ``seconds`` per pass; ``serial``: passes cannot overlap (they share the cores)."""

    n_seeds = 3

    def __init__(self, seconds: float, serial: bool) -> None:
        self.seconds, self.lock = seconds, threading.Lock() if serial else None

    def features(self, x):
        if self.lock is None:
            time.sleep(self.seconds)
        else:
            with self.lock:
                time.sleep(self.seconds)

    def to(self, device):
        return self


@pytest.mark.parametrize(("workers", "serial", "stacks"), [
    (2, True, False),  # stacked 20 ms/clip beats 3 × 10 ms one at a time, but not 3 × 10 ms two at once (15)
    (2, False, True),  # stacked passes overlap too: 10 ms/clip two at once beats 15
    (1, True, True),   # one thread: no clips in parallel, stacked 20 ms beats 30
])
def test_stacking_is_weighed_against_single_networks_with_clips_in_parallel(monkeypatch, workers, serial, stacks):
    from fewshot.frontends import extract_many as many_module

    fes = [create_frontend("temporal", filters=2, seed=s) for s in range(3)]
    fake = _FakeStacked(0.02, serial)
    monkeypatch.setattr(many_module, "stack_frontends", lambda group: fake)
    monkeypatch.setattr(many_module, "parallel_workers", lambda device: workers)
    fes[0].features = lambda x: time.sleep(0.01)  # sleeping releases the GIL: two single passes overlap
    got = many_module._stacked_if_faster(fes, _clips(fes[0], 1), CPU)
    assert (got is fake) is stacks
    assert [v for k, v in tuning.tuned_choices().items() if k[0] == "stack"] == [stacks]
