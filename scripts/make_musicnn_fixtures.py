"""Make the musicnn reference fixtures with musicnn's OWN TensorFlow code (never run by the tests).

The test fixtures in ``tests/fixtures/musicnn/`` hold what the original musicnn 0.1.0
(TensorFlow 1 graph, librosa front-end) outputs for three deterministic 16 kHz
signals; ``tests/test_pretrained.py`` compares the PyTorch port against them.
TensorFlow is not a dependency of fewshot: run this script in a throwaway virtual
environment outside the repository, e.g.::

    # reflect padding (librosa 0.8.1; the padding used in training, fewshot's default)
    python3 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow-cpu==2.15.1 numpy==1.23.5 numba==0.57.1 \
        scipy==1.11.4 librosa==0.8.1 resampy==0.4.2
    /tmp/tfenv/bin/pip install --no-deps musicnn==0.1.0
    /tmp/tfenv/bin/python scripts/make_musicnn_fixtures.py --out tests/fixtures/musicnn

    # zero padding (librosa >= 0.9; what musicnn does when installed today)
    python3 -m venv /tmp/tfenv10
    /tmp/tfenv10/bin/pip install tensorflow-cpu==2.15.1 numpy==1.26.4 librosa==0.10.2.post1
    /tmp/tfenv10/bin/pip install --no-deps musicnn==0.1.0
    /tmp/tfenv10/bin/python scripts/make_musicnn_fixtures.py --out tests/fixtures/musicnn

The padding mode is read from the librosa version (< 0.9: "reflect", else "constant")
and names the output folder. No shims are needed: musicnn's ``extractor`` module
itself calls ``tf.compat.v1.disable_eager_execution()`` and uses ``tf.compat.v1``.

What runs, all from the musicnn package:

- each signal is written as a float32 16 kHz WAV and read back by
  ``musicnn.extractor.batch_data`` (``librosa.load`` → melspectrogram → float16 →
  log10(10000 x + 1) → 187-frame patches, hop 187);
- the graph of ``musicnn.models.define_model`` is restored from the package's
  checkpoint and run one patch at a time (BATCH_SIZE 1, ``is_training=False``),
  fetching ``sigmoid(logits)`` (taggram) and the penultimate layer: musicnn's
  ``penultimate`` (200-d) or vgg's flattened ``pool5`` (256-d). The penultimate layer
  is fetched from the graph because ``extractor()`` repeats the first patch's
  ``penultimate`` for every later patch (a musicnn 0.1.0 bug);
- as a cross-check, ``musicnn.extractor.extractor`` is also run and its taggram must
  equal ours.

Outputs (``<out>/<padding>/``): ``<model>.npz`` with ``<signal>.taggram`` (patches × 50)
and ``<signal>.embedding`` (patches × dims); ``logmel.npz`` with the first and last 4
log-mel frames and the per-band mean of every signal; ``meta.json`` with versions and
the signal recipes and their sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile

import numpy as np

SR = 16000
MODELS = ("MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg")
#: name → recipe; tests/test_pretrained.py regenerates the same float32 arrays.
SIGNALS = {
    "sine": {"kind": "sine", "seconds": 10.0, "freq": 440.0, "amplitude": 0.5},
    "noise": {"kind": "noise", "seconds": 10.0, "seed": 0, "scale": 0.1},
    "chirp": {"kind": "chirp", "seconds": 7.5, "f0": 100.0, "f1": 4000.0, "amplitude": 0.5},
}


def make_signal(recipe: dict) -> np.ndarray:
    """Float32 16 kHz waveform of a recipe (bit-identical under numpy 1.23 and 2.x here)."""
    n = int(round(recipe["seconds"] * SR))
    t = np.arange(n, dtype=np.float64) / SR
    if recipe["kind"] == "sine":
        y = recipe["amplitude"] * np.sin(2 * np.pi * recipe["freq"] * t)
    elif recipe["kind"] == "noise":
        y = recipe["scale"] * np.random.RandomState(recipe["seed"]).standard_normal(n)
    elif recipe["kind"] == "chirp":
        rate = (recipe["f1"] - recipe["f0"]) / recipe["seconds"]
        y = recipe["amplitude"] * np.sin(2 * np.pi * (recipe["f0"] * t + 0.5 * rate * t * t))
    else:
        raise ValueError(recipe["kind"])
    return y.astype(np.float32)


def run_model(model: str, batches: dict[str, np.ndarray], wav_paths: dict[str, str]) -> dict[str, np.ndarray]:
    import tensorflow as tf
    from musicnn import configuration as config
    from musicnn import extractor, models

    labels = config.MTT_LABELS if "MTT" in model else config.MSD_LABELS
    tf.compat.v1.reset_default_graph()
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, 187, config.N_MELS])
        is_training = tf.compat.v1.placeholder(tf.bool)
        if "vgg" in model:
            y, *_, pool5 = models.define_model(x, is_training, model, len(labels))
            penultimate = tf.reshape(pool5, [-1, int(np.prod(pool5.shape[1:]))])  # = layers.flatten (NHWC)
        else:
            y, *_, penultimate = models.define_model(x, is_training, model, len(labels))
        taggram_t = tf.nn.sigmoid(y)
    out = {}
    with tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        tf.compat.v1.train.Saver().restore(sess, os.path.join(os.path.dirname(extractor.__file__), model) + "/")
        for name, batch in batches.items():
            tags, embs = [], []
            for i in range(batch.shape[0]):  # BATCH_SIZE = 1, as musicnn
                t, e = sess.run([taggram_t, penultimate], feed_dict={x: batch[i : i + 1], is_training: False})
                tags.append(t)
                embs.append(e)
            out[f"{name}.taggram"] = np.concatenate(tags).astype(np.float32)
            out[f"{name}.embedding"] = np.concatenate(embs).astype(np.float32)
    for name, path in wav_paths.items():  # cross-check against musicnn's public entry point
        taggram, _, _ = extractor.extractor(path, model=model, input_length=3, extract_features=True)
        diff = float(np.max(np.abs(taggram - out[f"{name}.taggram"])))
        print(f"  {model} {name}: extractor() vs per-patch taggram max abs diff {diff:.2e}", file=sys.stderr)
        if diff > 1e-6:
            raise RuntimeError(f"extractor() disagrees with the per-patch run for {model} {name}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="fixture root, e.g. tests/fixtures/musicnn")
    args = parser.parse_args()

    import librosa
    import soundfile as sf
    import tensorflow as tf
    from musicnn import extractor

    major, minor = (int(p) for p in librosa.__version__.split(".")[:2])
    padding = "reflect" if (major, minor) < (0, 9) else "constant"
    out_dir = os.path.join(args.out, padding)
    os.makedirs(out_dir, exist_ok=True)

    batches, wav_paths, logmel = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, recipe in SIGNALS.items():
            y = make_signal(recipe)
            recipe["sha256"] = hashlib.sha256(y.tobytes()).hexdigest()
            wav_paths[name] = os.path.join(tmp, f"{name}.wav")
            sf.write(wav_paths[name], y, SR, subtype="FLOAT")
            batch, audio_rep = extractor.batch_data(wav_paths[name], 187, 187)
            batches[name] = batch
            logmel[f"{name}.head"] = audio_rep[:4].astype(np.float32)
            logmel[f"{name}.tail"] = audio_rep[-4:].astype(np.float32)
            logmel[f"{name}.mean"] = audio_rep.mean(axis=0).astype(np.float32)
            logmel[f"{name}.n_frames"] = np.array(audio_rep.shape[0])
            print(f"{name}: {audio_rep.shape[0]} frames, {batch.shape[0]} patches", file=sys.stderr)
        np.savez_compressed(os.path.join(out_dir, "logmel.npz"), **logmel)
        for model in MODELS:
            np.savez_compressed(os.path.join(out_dir, f"{model}.npz"), **run_model(model, batches, wav_paths))

    from importlib.metadata import version

    meta = {
        "padding": padding,
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "librosa": librosa.__version__,
        "numpy": np.__version__,
        "musicnn": version("musicnn"),
        "sr": SR,
        "patch_frames": 187,
        "patch_hop": 187,
        "signals": SIGNALS,
    }
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print(f"wrote {out_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
