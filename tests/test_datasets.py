"""Dataset loaders (on tiny generated copies of each layout), load_dataset and the n-shot sampler."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from fewshot.data.datasets import DATASETS, Dataset, load_dataset
from fewshot.data.datasets import _fixtures as fx
from fewshot.data.datasets.gtzan import gtzan_lists
from fewshot.data.datasets.synth import SYNTH_CLASSES, synth_clip
from fewshot.data.datasets.tut import location_of
from fewshot.data.sampler import default_runs, parse_n, sample_subset
from fewshot.exceptions import DataError, ParameterError

LOADERS = ["ballroom", "csv", "esc50", "extended_ballroom", "folder", "gtzan", "synth", "tut2016", "tut2017",
           "urbansound8k"]


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("layouts")
    return {
        "folder": fx.write_tone_folder(root / "tones", classes=3, clips=6),
        "csv": fx.write_csv_dataset(root / "csvset", classes=3, clips=6),
        "csv_folds": fx.write_csv_dataset(root / "csvfolds", classes=3, clips=6, folds=3, name="folds.csv"),
        "urbansound8k": fx.write_urbansound8k(root),
        "esc50": fx.write_esc50(root),
        "gtzan": fx.write_gtzan(root, corrupt=("jazz/jazz.00054.wav",), skip=("rock/rock.00099.wav",)),
        "ballroom": fx.write_ballroom(root),
        "extended_ballroom": fx.write_ballroom(root, extended=True),
        "tut2016": fx.write_tut(root / "t16", year=2016),
        "tut2017": fx.write_tut(root / "t17", year=2017),
        "tut2017_dev_only": fx.write_tut(root / "t17b", year=2017, evaluation=False),
    }


def _load(layouts, key, **kw) -> Dataset:
    loader = key.split("_dev_only")[0]
    return load_dataset(f"{loader}:{layouts[key]}", **kw)


# --------------------------------------------------------------------------- registry


def test_every_loader_is_registered_with_layout_and_citation():
    assert DATASETS.names() == LOADERS
    for entry in DATASETS:
        assert entry.meta["layout"] and entry.meta["citation"], entry.name
        assert entry.description


# --------------------------------------------------------------------------- each loader


def test_folder_loader(layouts):
    ds = load_dataset(str(layouts["folder"]))
    assert ds.name == "folder" and ds.id == "folder-tones"
    assert len(ds) == 18 and ds.classes == ["tone0", "tone1", "tone2"]
    assert ds.test_folds == ["1", "2", "3", "4", "5"] and not ds.official_folds
    assert all(Path(c.path).is_absolute() and Path(c.path).is_file() for c in ds.clips)
    train, valid, test = ds.split("1")
    assert len(valid) == 0 and not set(train) & set(test) and len(train) + len(test) == len(ds)


def test_folder_folds_follow_seed_and_n_folds(layouts):
    a = load_dataset(str(layouts["folder"]), seed=0)
    b = load_dataset(str(layouts["folder"]), seed=0)
    c = load_dataset(str(layouts["folder"]), seed=1)
    assert [x.fold for x in a.clips] == [x.fold for x in b.clips]
    assert [x.fold for x in a.clips] != [x.fold for x in c.clips]
    three = load_dataset(str(layouts["folder"]), n_folds=3)
    assert three.test_folds == ["1", "2", "3"] and three.folds == ["1", "2", "3"]
    # stratified: each fold holds 2 clips of each of the 3 classes
    for fold in three.folds:
        labels = [x.label for x in three.clips if x.fold == fold]
        assert sorted(labels) == sorted(three.classes * 2)


def test_folder_with_manifest(tmp_path):
    fx.write_csv_dataset(tmp_path / "mf", classes=2, clips=4, folds=2, name="manifest.csv")
    ds = load_dataset(str(tmp_path / "mf"))
    assert ds.name == "folder" and ds.id == "folder-mf"
    assert ds.official_folds and ds.test_folds == ["1", "2"] and len(ds) == 8


def test_csv_loader_without_and_with_folds(layouts):
    ds = load_dataset(str(layouts["csv"]))
    assert ds.name == "csv" and ds.id == "csv-index" and len(ds) == 18
    assert ds.test_folds == ["1", "2", "3", "4", "5"] and not ds.official_folds
    published = load_dataset(str(layouts["csv_folds"]), seed=3)
    assert published.official_folds and published.test_folds == ["1", "2", "3"]
    assert [c.fold for c in published.clips] == [str(j % 3 + 1) for _ in range(3) for j in range(6)]


def test_csv_groups_keep_clips_together(tmp_path):
    path = fx.write_csv_dataset(tmp_path, classes=2, clips=10, groups=True)
    ds = load_dataset(str(path))
    fold_of_group: dict[str, set] = {}
    for c in ds.clips:
        fold_of_group.setdefault(c.group, set()).add(c.fold)
    assert all(len(f) == 1 for f in fold_of_group.values()) and len(fold_of_group) == 10


def test_csv_train_valid_test_split(tmp_path):
    (tmp_path / "a").mkdir()
    lines = ["path,label,fold"]
    for k in range(2):
        for j, fold in enumerate(["train", "train", "valid", "test"]):
            fx.write_wav(tmp_path / "a" / f"{k}_{j}.wav", fx.tone(k, seconds=0.05), 16000)
            lines.append(f"a/{k}_{j}.wav,c{k},{fold}")
    (tmp_path / "split.csv").write_text("\n".join(lines))
    ds = load_dataset(str(tmp_path / "split.csv"))
    assert ds.test_folds == ["test"] and ds.splits == {"test": (("train",), ("valid",))}
    train, valid, test = ds.split("test")
    assert (len(train), len(valid), len(test)) == (4, 2, 2)


def test_urbansound8k_official_folds(layouts):
    ds = _load(layouts, "urbansound8k", seed=7)
    assert ds.id == "urbansound8k-UrbanSound8K" and ds.official_folds
    assert ds.test_folds == [str(k) for k in range(1, 11)]
    assert len(ds) == 30 and ds.classes == ["air_conditioner", "car_horn", "children_playing"]
    for c in ds.clips:  # fold as published: the audio/fold<k> folder of the file
        assert Path(c.path).parent.name == f"fold{c.fold}"
        assert c.group == Path(c.path).name.split("-")[0]
    train, _, test = ds.split("10")
    assert len(test) == 3 and len(train) == 27


def test_esc50_official_folds(layouts):
    ds = _load(layouts, "esc50")
    assert ds.id == "esc50-ESC-50" and ds.official_folds and ds.test_folds == ["1", "2", "3", "4", "5"]
    assert len(ds) == 30 and ds.classes == ["dog", "pig", "rooster"]
    assert all(c.fold == Path(c.path).name.split("-")[0] for c in ds.clips)
    assert len({c.group for c in ds.clips}) == 15


def test_gtzan_split_and_dropped_files(layouts):
    lists = gtzan_lists()
    assert [len(lists[f]) for f in ("train", "valid", "test")] == [443, 197, 290]
    ds = _load(layouts, "gtzan")
    assert ds.id == "gtzan-GTZAN" and len(ds) == 928 and len(ds.classes) == 10
    assert ds.test_folds == ["test"] and ds.splits == {"test": (("train",), ("valid",))}
    assert len(ds.notes) == 1 and "jazz/jazz.00054.wav" in ds.notes[0] and "rock/rock.00099.wav" in ds.notes[0]
    train, valid, test = ds.split("test")
    assert (len(train), len(valid), len(test)) == (441, 197, 290)  # both dropped files are training files


def test_gtzan_au_files_and_bare_genre_folder(tmp_path):
    base = fx.write_gtzan(tmp_path, ext="au", nest="")
    ds = load_dataset(f"gtzan:{base}")
    assert len(ds) == 930 and ds.clips[0].path.endswith(".au") and not ds.notes


def test_gtzan_fails_when_most_files_are_missing(tmp_path):
    base = fx.write_gtzan(tmp_path, only=5)
    with pytest.raises(DataError, match=r"gtzan: only \d+ of the 930 listed files"):
        load_dataset(f"gtzan:{base}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no genres/ folder"):
        load_dataset(f"gtzan:{tmp_path / 'empty'}")


@pytest.mark.parametrize("key, n_classes, n_clips", [("ballroom", 8, 100), ("extended_ballroom", 13, 130)])
def test_ballroom_fixed_folds(layouts, key, n_classes, n_clips):
    ds = _load(layouts, key, seed=0, n_folds=5)
    other = _load(layouts, key, seed=123, n_folds=3)
    assert len(ds.classes) == n_classes and len(ds) == n_clips
    assert ds.test_folds == [str(k) for k in range(1, 11)]
    assert [c.fold for c in ds.clips] == [c.fold for c in other.clips]  # independent of --seed
    if key == "ballroom":
        assert "Rumba" in ds.classes and sum(c.label == "Rumba" for c in ds.clips) == 30
        assert any("nada" in n for n in ds.notes)


def test_ballroom_folds_do_not_depend_on_location(layouts, tmp_path):
    copy = shutil.copytree(layouts["ballroom"], tmp_path / "elsewhere" / "BallroomData")
    a, b = _load(layouts, "ballroom"), load_dataset(f"ballroom:{copy}")
    assert a.id == b.id and [c.fold for c in a.clips] == [c.fold for c in b.clips]


def test_tut2016_published_folds(layouts):
    ds = _load(layouts, "tut2016")
    assert ds.id == "tut2016-TUT-acoustic-scenes-2016-development" and ds.official_folds
    assert ds.test_folds == ["1", "2", "3", "4"] and len(ds) == 24
    assert ds.classes == ["beach", "bus", "cafe/restaurant"]
    for c in ds.clips:
        assert c.group == Path(c.path).name.split("_")[0]
    train, _, test = ds.split("2")
    assert len(test) == 6 and len(train) == 18
    assert not {ds.clips[i].group for i in train} & {ds.clips[i].group for i in test}


def test_tut2017_with_evaluation_set(layouts):
    ds = _load(layouts, "tut2017")
    assert ds.id == "tut2017-TUT-acoustic-scenes-2017-development+eval"
    assert ds.test_folds == ["1", "2", "3", "4", "evaluation"] and len(ds) == 30
    train, valid, test = ds.split("evaluation")
    assert (len(train), len(valid), len(test)) == (24, 0, 6)
    train, _, test = ds.split("1")  # a development fold never trains on the evaluation set
    assert len(train) == 18 and all(ds.clips[i].fold in {"2", "3", "4"} for i in train)
    dev_only = DATASETS.create("tut2017", path=str(layouts["tut2017"]), evaluation=False)
    assert dev_only.test_folds == ["1", "2", "3", "4"] and dev_only.id == "tut2017-TUT-acoustic-scenes-2017-development"


def test_tut2017_without_evaluation_folder(layouts):
    ds = _load(layouts, "tut2017_dev_only")
    assert ds.test_folds == ["1", "2", "3", "4"] and len(ds) == 24


def test_tut_rejects_a_training_list_that_holds_its_test_fold(tmp_path):
    dev = fx.write_tut(tmp_path, year=2016)
    evaluate = (dev / "evaluation_setup" / "fold1_evaluate.txt").read_text()
    with open(dev / "evaluation_setup" / "fold1_train.txt", "a") as fh:
        fh.write(evaluate.splitlines()[0] + "\n")
    with pytest.raises(DataError, match="fold1_train.txt lists .* which fold1_evaluate.txt tests on"):
        load_dataset(f"tut2016:{dev}")


def test_location_of():
    assert location_of("audio/a001_10_20.wav") == "a001"
    assert location_of("b020_90_100.wav") == "b020"
    assert location_of("audio/17.wav") == "17"


# --------------------------------------------------------------------------- ids and spec parsing


def test_ids_stable_across_path_spellings(layouts, monkeypatch):
    folder = layouts["folder"]
    monkeypatch.chdir(folder.parent)
    spellings = [str(folder), "tones", "tones/", f"./tones/../{folder.name}", f"folder:{folder}", "folder:tones"]
    ids = {load_dataset(s).id for s in spellings}
    assert ids == {"folder-tones"}
    folds = {tuple(c.fold for c in load_dataset(s).clips) for s in spellings}
    assert len(folds) == 1
    us = layouts["urbansound8k"]
    monkeypatch.chdir(us.parent)
    assert load_dataset("urbansound8k:UrbanSound8K").id == load_dataset(f"urbansound8k:{us}/").id


def test_folder_folds_do_not_depend_on_location(layouts, tmp_path):
    copy = shutil.copytree(layouts["folder"], tmp_path / "moved" / "tones")
    a, b = load_dataset(str(layouts["folder"])), load_dataset(str(copy))
    assert a.id == b.id and [c.fold for c in a.clips] == [c.fold for c in b.clips]


def test_spec_parsing(layouts):
    assert load_dataset(str(layouts["csv"])).name == "csv"
    assert load_dataset(str(layouts["folder"])).name == "folder"
    assert load_dataset(f"csv:{layouts['csv']}").name == "csv"
    assert load_dataset("synth").id == "synth-c10-n40-s4.0-seed0"
    assert load_dataset("synth:classes=3,clips=5,seconds=1,seed=2").id == "synth-c3-n5-s1.0-seed2"
    assert load_dataset("synth:sr=8000,classes=2").id == "synth-c2-n40-s4.0-seed0-sr8000"


def test_unknown_loader_lists_valid_ones(tmp_path):
    with pytest.raises(ParameterError, match=r"unknown dataset 'nosuch'; available: ballroom, csv, .*urbansound8k"):
        load_dataset(f"nosuch:{tmp_path}")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "--dataset is empty"),
        ("/no/such/folder", r"no such file or folder \(/no/such/folder\)"),
        ("folder:/no/such/folder", r"folder: /no/such/folder not found; expected one sub-folder per class"),
        ("urbansound8k:/no/such", r"urbansound8k: /no/such not found; expected the UrbanSound8K folder"),
        ("esc50:", "esc50: no path given; expected the ESC-50 folder"),
    ],
)
def test_missing_path_messages(spec, message):
    with pytest.raises((DataError, ParameterError), match=message):
        load_dataset(spec)


@pytest.mark.parametrize("loader, expected", [
    ("urbansound8k", "metadata/UrbanSound8K.csv not found; expected the UrbanSound8K folder holding metadata/"),
    ("esc50", "meta/esc50.csv not found; expected the ESC-50 folder"),
    ("tut2016", "meta.txt not found; expected a TUT-acoustic-scenes-2016-development folder"),
    ("tut2017", "meta.txt not found; expected a TUT-acoustic-scenes-2017-development folder"),
    ("ballroom", "has no sub-folders; expected the BallroomData folder"),
    ("extended_ballroom", "has no sub-folders; expected the extended_ballroom folder"),
    ("folder", "has no sub-folders; expected one sub-folder per class"),
])
def test_empty_folder_says_what_is_expected(tmp_path, loader, expected):
    with pytest.raises(DataError, match=rf"{loader}: {tmp_path}[/ ]{expected}"):
        load_dataset(f"{loader}:{tmp_path}")


def test_missing_audio_file_is_named(layouts, tmp_path):
    copy = shutil.copytree(layouts["urbansound8k"], tmp_path / "UrbanSound8K")
    victim = next((copy / "audio" / "fold3").iterdir())
    victim.unlink()
    with pytest.raises(DataError, match=rf"audio file {victim} listed in .*UrbanSound8K.csv not found"):
        load_dataset(f"urbansound8k:{copy}")


# --------------------------------------------------------------------------- bad inputs


def _csv(tmp_path, text: str) -> str:
    fx.write_wav(tmp_path / "a.wav", fx.tone(0, seconds=0.05), 16000)
    fx.write_wav(tmp_path / "b.wav", fx.tone(1, seconds=0.05), 16000)
    (tmp_path / "x.csv").write_text(text)
    return str(tmp_path / "x.csv")


def test_csv_without_label_column(tmp_path):
    with pytest.raises(DataError, match=r"csv: .*x.csv has no 'label' column; columns found: path, class"):
        load_dataset(_csv(tmp_path, "path,class\na.wav,dog\n"))


def test_csv_duplicate_paths(tmp_path):
    text = "path,label,fold\na.wav,dog,1\n./a.wav,dog,2\nb.wav,cat,1\n"
    with pytest.raises(DataError, match=r"path .*a.wav is listed more than once"):
        load_dataset(_csv(tmp_path, text))


def test_labels_differing_only_by_case(tmp_path):
    with pytest.raises(DataError, match="labels differ only by case"):
        load_dataset(_csv(tmp_path, "path,label,fold\na.wav,Dog,1\nb.wav,dog,2\n"))


def test_csv_empty_cell_and_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"x.csv line 3: empty 'label' cell"):
        load_dataset(_csv(tmp_path, "path,label,fold\na.wav,dog,1\nb.wav,,2\n"))
    with pytest.raises(DataError, match=r"audio file .*c.wav listed in .*x.csv not found"):
        load_dataset(_csv(tmp_path, "path,label,fold\na.wav,dog,1\nc.wav,cat,2\n"))


def test_class_folder_with_no_clips(tmp_path):
    fx.write_tone_folder(tmp_path / "d", classes=2, clips=5)
    (tmp_path / "d" / "empty_class").mkdir()
    with pytest.raises(DataError, match=r"class folder .*empty_class holds no audio files"):
        load_dataset(str(tmp_path / "d"))


def test_too_few_clips_for_folds(tmp_path):
    fx.write_tone_folder(tmp_path / "d", classes=1, clips=3)
    with pytest.raises(DataError, match="cannot make 5 folds from 3 groups"):
        load_dataset(str(tmp_path / "d"))


# --------------------------------------------------------------------------- synth


def test_synth_is_deterministic_and_seeded():
    ds = load_dataset("synth:classes=4,clips=5,seconds=0.5")
    again = load_dataset("synth:classes=4,clips=5,seconds=0.5")
    other = load_dataset("synth:classes=4,clips=5,seconds=0.5,seed=1")
    assert ds.id == "synth-c4-n5-s0.5-seed0" and len(ds) == 20 and ds.reader is not None
    w, sr = ds.reader(ds.clips[3])
    assert w.dtype == np.float32 and w.shape == (8000,) and sr == 16000 and np.abs(w).max() <= 1
    np.testing.assert_array_equal(w, again.reader(again.clips[3])[0])
    assert not np.allclose(w, other.reader(other.clips[3])[0])
    assert ds.identity(ds.clips[3]) == again.identity(again.clips[3]) != other.identity(other.clips[3])
    assert len({ds.identity(c) for c in ds.clips}) == len(ds)
    # a clip does not change when the set grows, and clips differ from each other
    bigger = load_dataset("synth:classes=4,clips=9,seconds=0.5")
    # clips are class-major: clip 6 of 5-per-class is clip 1 of class 1, i.e. clip 10 of 9-per-class
    assert ds.clips[6].label == bigger.clips[10].label
    np.testing.assert_array_equal(ds.reader(ds.clips[6])[0], bigger.reader(bigger.clips[10])[0])
    assert not np.allclose(ds.reader(ds.clips[0])[0], ds.reader(ds.clips[1])[0])


def test_synth_folds_follow_user_seed_not_audio_seed():
    a = load_dataset("synth:classes=3,clips=10", seed=0)
    b = load_dataset("synth:classes=3,clips=10", seed=1)
    assert a.id == b.id and [c.fold for c in a.clips] != [c.fold for c in b.clips]
    assert all(sum(c.fold == f and c.label == "flute" for c in a.clips) == 2 for f in a.test_folds)


def test_synth_every_class_generates():
    for label in SYNTH_CLASSES:
        w = synth_clip(label, 0, seconds=0.3, sr=8000)
        assert w.shape == (2400,) and np.isfinite(w).all() and np.abs(w).max() > 0.05


@pytest.mark.parametrize("options, message", [
    ("classes=11", r"classes must be 2..10; got 11"),
    ("clips=0", "clips must be at least 1; got 0"),
    ("colour=red", r"synth option 'colour=red' is not KEY=VALUE"),
    ("classes=ten", "classes must be an integer; got 'ten'"),
])
def test_synth_bad_options(options, message):
    with pytest.raises(ParameterError, match=message):
        load_dataset(f"synth:{options}")


def test_synth_is_learnable_but_not_trivial():
    """1-NN on standardised log band energies: well above chance (0.1), well below perfect (about 0.45)."""
    ds = load_dataset("synth:classes=10,clips=12,seconds=1,sr=8000", n_folds=3)
    edges = np.geomspace(50, 4000, 25)
    freqs = np.fft.rfftfreq(256, 1 / 8000)
    feats = []
    for c in ds.clips:
        w, _ = ds.reader(c)
        frames = w[: len(w) // 256 * 256].reshape(-1, 256)
        power = np.abs(np.fft.rfft(frames * np.hanning(256), axis=1)) ** 2
        bands = np.stack([power[:, (freqs >= lo) & (freqs < hi)].sum(1)
                          for lo, hi in zip(edges[:-1], edges[1:], strict=True)], 1)
        logb = np.log(bands + 1e-10)
        logb -= logb.max()  # level-invariant, as the loudness is random
        feats.append(np.concatenate([logb.mean(0), logb.std(0)]))
    X, y = np.array(feats), ds.y
    accs = []
    for fold in ds.test_folds:
        train, _, test = ds.split(fold)
        Z = (X - X[train].mean(0)) / (X[train].std(0) + 1e-9)
        d = ((Z[test, None, :] - Z[None, train, :]) ** 2).sum(-1)
        accs.append(np.mean(y[train][d.argmin(1)] == y[test]))
    assert 0.25 < np.mean(accs) < 0.9


# --------------------------------------------------------------------------- sampler


@pytest.fixture(scope="module")
def small() -> Dataset:
    return load_dataset("synth:classes=4,clips=10,seconds=0.1", seed=0)


def test_sampler_is_deterministic_and_balanced(small):
    a = sample_subset(small, "1", 3, 0, seed=0)
    b = sample_subset(small, "1", 3, 0, seed=0)
    np.testing.assert_array_equal(a.train, b.train)
    assert np.bincount(small.y[a.train]).tolist() == [3, 3, 3, 3] and not a.capped
    assert not set(a.train) & set(a.test)
    assert set(a.test) == set(np.flatnonzero([c.fold == "1" for c in small.clips]))
    assert all(small.clips[i].fold != "1" for i in a.train)


def test_sampler_varies_with_run_seed_fold(small):
    base = sample_subset(small, "1", 3, 0, seed=0).train
    assert not np.array_equal(base, sample_subset(small, "1", 3, 1, seed=0).train)
    assert not np.array_equal(base, sample_subset(small, "1", 3, 0, seed=1).train)
    assert not np.array_equal(base, sample_subset(small, "2", 3, 0, seed=0).train)


def test_sampler_same_subset_for_a_reloaded_dataset(small):
    again = load_dataset("synth:classes=4,clips=10,seconds=0.1", seed=0)
    for run in range(3):
        np.testing.assert_array_equal(sample_subset(small, "2", 2, run, seed=5).train,
                                      sample_subset(again, "2", 2, run, seed=5).train)


def test_sampler_all_and_cap(small):
    whole = sample_subset(small, "1", "all", 0, seed=0)
    train, _, _ = small.split("1")
    np.testing.assert_array_equal(whole.train, np.sort(train))
    with pytest.raises(DataError, match=r"class '\w+' has 8 clips in the training pool of fold '1', fewer than n=9"):
        sample_subset(small, "1", 9, 0, seed=0)
    capped = sample_subset(small, "1", 9, 0, seed=0, cap=True)
    assert capped.capped and len(capped.train) == len(train)


def test_sampler_uses_published_train_split(tmp_path):
    lines = ["path,label,fold"]
    for k in range(2):
        for j, fold in enumerate(["train"] * 3 + ["valid", "test"]):
            fx.write_wav(tmp_path / f"{k}_{j}.wav", fx.tone(k, seconds=0.05), 16000)
            lines.append(f"{k}_{j}.wav,c{k},{fold}")
    (tmp_path / "s.csv").write_text("\n".join(lines))
    ds = load_dataset(str(tmp_path / "s.csv"))
    sub = sample_subset(ds, "test", 2, 0, seed=0)
    assert all(ds.clips[i].fold == "train" for i in sub.train)
    assert [ds.clips[i].fold for i in sub.valid] == ["valid", "valid"]
    with pytest.raises(ParameterError, match="fold 'train' is not a test fold"):
        sample_subset(ds, "train", 1, 0, seed=0)


def test_parse_n_and_default_runs():
    assert parse_n("5") == 5 and parse_n(" ALL ") == "all" and parse_n(3) == 3
    for bad in ("0", "-1", "x", 0):
        with pytest.raises(ParameterError, match="n must be a positive int or 'all'"):
            parse_n(bad)
    assert [default_runs(n) for n in (1, 2, 5, 10, 20, "all")] == [20, 20, 10, 10, 5, 5]

