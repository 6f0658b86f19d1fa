"""Benchmark (issue 29): a speaker held out as test/, and what ``--group-by`` does to validation.

The issue's case is spoken-digit spectrograms (six speakers, 50 takes of each digit each, one
speaker held out as ``test/``). No spoken-digit recordings are on this machine or on PyPI, so
the recordings are synthesised here, and the figures are this synthetic set's, not the issue's:

- each digit is a sequence of speech sounds (vowel formant targets from Peterson and Barney's
  tables, fricative and burst noise, nasals), with formants moving between targets;
- each speaker has a pitch, a vocal-tract scale on every formant, an accent (a fixed offset of
  each vowel's formants), a speaking rate and a spectral tilt, drawn once from a seeded draw;
- each take varies pitch, intonation, formants, timing, loudness and background noise;
- a take is a waveform (8 kHz, harmonics of the pitch weighted by the formant resonances), and
  its image is the log-power STFT (256-sample windows, hop 128, 0-4 kHz) resampled to 32 x 32
  grayscale, low frequencies at the bottom, as the issue's images were.

Files are named as the Free Spoken Digit Dataset names them (``3_theo_12.png``), so the issue's
expression ``^\\d+_([a-z]+)_`` names the speaker. Then, on the same folder, the default search
twice (the default teacher, a short budget): validation carved from ``train/`` as it is by
default, and with ``--group-by``. For each, the teacher's validation and test accuracy, the gap
line the search printed, and the best student's brief validation accuracy against its test
accuracy after ``train``. Writes ``held_out_speaker.{json,md}`` under ``--out``.

    python benchmarks/held_out_speaker.py --work /tmp/speakers
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

RATE = 8000
SECONDS = 0.6
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
GROUP_BY = r"^\d+_([a-z]+)_"

# Vowel formants F1-F3 (Hz), adult male averages (Peterson and Barney, 1952).
VOWELS = {
    "i": (270, 2290, 3010),
    "I": (390, 1990, 2550),
    "E": (530, 1840, 2480),
    "ae": (660, 1720, 2410),
    "a": (730, 1090, 2440),
    "o": (570, 840, 2410),
    "U": (440, 1020, 2240),
    "u": (300, 870, 2240),
    "V": (640, 1190, 2390),
    "R": (490, 1350, 1690),
    "n": (250, 1100, 2300),  # nasal murmur: low, weak above
    "w": (300, 700, 2200),
}
# A digit: its sounds in order, each (sound, share of the word's length). A sound is a vowel
# (voiced, formants), "s"/"f"/"th" (fricative noise), "z"/"v" (voiced fricative) or "t"/"k"
# (a burst).
WORDS = {
    0: [("z", 0.2), ("I", 0.2), ("R", 0.3), ("o", 0.3)],
    1: [("w", 0.2), ("V", 0.5), ("n", 0.3)],
    2: [("t", 0.15), ("u", 0.85)],
    3: [("th", 0.25), ("R", 0.35), ("i", 0.4)],
    4: [("f", 0.25), ("o", 0.45), ("R", 0.3)],
    5: [("f", 0.2), ("a", 0.35), ("i", 0.3), ("v", 0.15)],
    6: [("s", 0.25), ("I", 0.3), ("k", 0.15), ("s", 0.3)],
    7: [("s", 0.25), ("E", 0.3), ("v", 0.15), ("V", 0.1), ("n", 0.2)],
    8: [("E", 0.4), ("i", 0.45), ("t", 0.15)],
    9: [("n", 0.25), ("a", 0.3), ("i", 0.25), ("n", 0.2)],
}
NOISE_BANDS = {"s": (3200, 4000), "z": (3200, 4000), "f": (800, 4000), "th": (1200, 4000)}
NOISE_BANDS |= {"v": (600, 3000), "t": (2500, 4000), "k": (1200, 2600)}
VOICED_NOISE = {"z", "v"}
BANDWIDTHS = np.array([80.0, 110.0, 160.0])


def speaker_traits(seed: int) -> dict[str, dict]:
    """Each speaker's voice, drawn once: pitch, vocal tract, accent, rate, tilt."""
    rng = np.random.default_rng(seed)
    traits = {}
    for name in SPEAKERS:
        traits[name] = {
            "f0": float(rng.uniform(95, 240)),
            "tract": float(rng.uniform(0.9, 1.2)),  # formants scaled (shorter tract: higher)
            "accent": {v: rng.normal(1.0, 0.07, 3).tolist() for v in VOWELS},
            "rate": float(rng.uniform(0.75, 1.0)),  # share of the clip the word takes
            "tilt": float(rng.uniform(-14, -6)),  # dB per octave above 500 Hz
            "breath": float(rng.uniform(0.0, 0.25)),
        }
    return traits


def utterance(digit: int, voice: dict, rng: np.random.Generator) -> np.ndarray:
    """One take of ``digit`` in ``voice``: a waveform of ``SECONDS`` at ``RATE``."""
    n = int(RATE * SECONDS)
    length = min(int(n * voice["rate"] * rng.uniform(0.85, 1.1)), n)
    start = int(rng.uniform(0, max(n - length, 1)))
    # where each sound is, and the formant targets moving linearly between vowel centres
    shares = np.array([s for _, s in WORDS[digit]])
    edges = np.concatenate([[0], np.cumsum(shares / shares.sum())]) * length
    sound_at = np.searchsorted(edges[1:], np.arange(length), side="right").clip(0, len(shares) - 1)
    scale = voice["tract"] * rng.uniform(0.97, 1.03)
    centres, targets = [], []
    for i, (sound, _) in enumerate(WORDS[digit]):
        if sound in VOWELS:
            centres.append((edges[i] + edges[i + 1]) / 2)
            targets.append(np.array(VOWELS[sound]) * np.array(voice["accent"][sound]) * scale)
    formants = np.stack(
        [np.interp(np.arange(length), centres, [f[k] for f in targets]) for k in range(3)], 1
    )
    # voiced source: harmonics of a pitch that drifts (intonation) and jitters a little
    f0 = voice["f0"] * rng.uniform(0.92, 1.08) * np.linspace(1.06, rng.uniform(0.85, 1.0), length)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voiced_gain = np.array([1.0 if s in VOWELS else 0.0 for s, _ in WORDS[digit]])[sound_at]
    voiced_gain += np.array([0.4 if s in VOICED_NOISE else 0.0 for s, _ in WORDS[digit]])[sound_at]
    nasal = np.array([s == "n" for s, _ in WORDS[digit]])[sound_at]
    wave = np.zeros(length)
    for k in range(1, int(RATE / 2 / voice["f0"] / 0.92)):
        freq = k * f0
        gain = np.zeros(length)
        for j in range(3):
            gain += 1.0 / (1.0 + ((freq - formants[:, j]) / (BANDWIDTHS[j] / 2)) ** 2)
        gain *= 10 ** (voice["tilt"] * np.log2(np.maximum(freq, 500) / 500) / 20)
        gain[nasal] *= np.where(freq[nasal] > 500, 0.15, 1.0)
        wave += np.where(freq < RATE / 2, gain * np.sin(k * phase), 0.0)
    wave *= voiced_gain * (1 + voice["breath"] * rng.standard_normal(length))
    # fricatives and bursts: band-limited noise
    for i, (sound, _) in enumerate(WORDS[digit]):
        if sound in NOISE_BANDS:
            a, b = int(edges[i]), int(edges[i + 1])
            if sound in ("t", "k"):
                b = min(b, a + int(0.03 * RATE))
            low, high = NOISE_BANDS[sound]
            wave[a:b] += 0.6 * band_noise(b - a, low * scale, high, rng)
    wave *= np.hanning(length) ** 0.2  # soft on- and offset
    out = np.zeros(n)
    out[start : start + length] = wave / (np.abs(wave).max() + 1e-9) * rng.uniform(0.3, 1.0)
    snr = 10 ** (rng.uniform(15, 30) / 20)
    return out + rng.standard_normal(n) * out.std() / snr


def band_noise(n: int, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(max(n, 2)))
    freqs = np.fft.rfftfreq(max(n, 2), 1 / RATE)
    spectrum[(freqs < low) | (freqs > high)] = 0
    return np.fft.irfft(spectrum, max(n, 2))[:n] / np.sqrt(max((high - low) / (RATE / 2), 1e-3))


def spectrogram(wave: np.ndarray, size: int = 32) -> np.ndarray:
    """Log-power STFT as a ``size`` x ``size`` uint8 image, low frequencies at the bottom."""
    from scipy.signal import stft

    _, _, z = stft(wave, fs=RATE, nperseg=256, noverlap=128)
    power = 10 * np.log10(np.abs(z) ** 2 + 1e-10)  # (129 bins, frames)
    rows = np.linspace(0, power.shape[0] - 1, size)
    cols = np.linspace(0, power.shape[1] - 1, size)
    by_row = np.stack([np.interp(rows, np.arange(power.shape[0]), c) for c in power.T], 1)
    image = np.stack([np.interp(cols, np.arange(power.shape[1]), r) for r in by_row], 0)
    top = image.max()
    image = np.clip((image - (top - 60)) / 60, 0, 1)
    return (255 * image[::-1]).astype(np.uint8)


def make_folder(root: Path, held_out: str, takes: int, seed: int) -> dict:
    """train/<digit>/ from five speakers, test/<digit>/ from ``held_out``; kept if made."""
    from PIL import Image

    traits = speaker_traits(seed)
    marker = root / "made.json"
    wanted = {"held_out": held_out, "takes": takes, "seed": seed}
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return traits
    rng = np.random.default_rng(seed + 1)
    for name in SPEAKERS:
        split = "test" if name == held_out else "train"
        for digit in WORDS:
            (root / split / str(digit)).mkdir(parents=True, exist_ok=True)
            for take in range(takes):
                image = spectrogram(utterance(digit, traits[name], rng))
                path = root / split / str(digit) / f"{digit}_{name}_{take}.png"
                Image.fromarray(image, "L").save(path)
    marker.write_text(json.dumps(wanted))
    return traits


def one_search(data: Path, out: Path, args: argparse.Namespace, group_by: str | None) -> dict:
    import autodistill

    name = "grouped" if group_by else "carved"
    run = autodistill.search(
        data=f"imagefolder:{data}",
        budget=args.budget,
        epochs=args.epochs,
        threads=args.threads,
        out=str(out),
        study_name=name,
        group_by=group_by,
    )
    trained = autodistill.train(run.run_dir, epochs=args.train_epochs).students[0]
    gap = run.teacher["validation_gap"]
    return {
        "validation": "whole speakers held out (--group-by)" if group_by else "carved (default)",
        "teacher_val": gap["val_accuracy"],
        "teacher_test": gap["test_accuracy"],
        "teacher_gap": gap["gap"],
        "noise": gap["noise"],
        "warned": [w for w in run.warnings if "on validation but" in w],
        "student": {
            "trial": trained["trial"],
            "arch": trained["arch"],
            "brief_val": trained.get("brief_val_accuracy"),
            "val": trained["val_accuracy"],
            "test": trained["test_accuracy"],
        },
    }


def write(doc: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "held_out_speaker.json").write_text(json.dumps(doc, indent=2))
    lines = [
        "# A speaker held out as test/: validation carved from train/ against --group-by",
        "",
        f"`{doc['command']}` on {doc['host']}, {doc['threads']} threads, {doc['minutes']:.0f} min.",
        "",
        f"Data: **synthesised** spoken digits (no recordings are on this machine), "
        f"{len(SPEAKERS)} speakers x 10 digits x {doc['takes']} takes, 32 x 32 log-power "
        f"spectrograms; `test/` is speaker `{doc['held_out']}`, `train/` the other five. How the "
        "takes are made: `benchmarks/held_out_speaker.py`'s docstring. Each row: the default "
        f"search (`--budget {doc['budget']} --epochs {doc['epochs']}`, the default teacher), then "
        f"`train` of the knee ({doc['train_epochs']} epochs).",
        "",
        "| validation | teacher val | teacher test | gap (noise) | warned | knee brief val | "
        "knee val | knee test |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["runs"]:
        s = r["student"]
        lines.append(
            f"| {r['validation']} | {100 * r['teacher_val']:.1f}% | {100 * r['teacher_test']:.1f}% "
            f"| {100 * r['teacher_gap']:+.1f} ({100 * r['noise']:.1f}) | "
            f"{'yes' if r['warned'] else 'no'} | {_pct(s['brief_val'])} | {_pct(s['val'])} | "
            f"{_pct(s['test'])} |"
        )
    lines += ["", "The lines the searches printed:", ""]
    lines += [f"- `{w}`" for r in doc["runs"] for w in r["warned"]] or ["- none"]
    (out / "held_out_speaker.md").write_text("\n".join(lines) + "\n")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/autodistill-speakers"))
    p.add_argument("--held-out", default="theo", choices=SPEAKERS)
    p.add_argument("--takes", type=int, default=50, help="takes of each digit by each speaker")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget", type=int, default=8)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-epochs", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = p.parse_args()
    import torch

    from autodistill.measure import device_name

    os.environ.setdefault("AUTODISTILL_CACHE", str(args.work / "cache"))
    started = time.perf_counter()
    data = args.work / f"data-{args.held_out}"
    make_folder(data, args.held_out, args.takes, args.seed)
    runs = [one_search(data, args.work / "runs", args, group_by) for group_by in (None, GROUP_BY)]
    doc = {
        "command": " ".join(["python", *sys.argv]),
        "host": device_name(torch.device("cpu")),
        "threads": args.threads,
        "held_out": args.held_out,
        "takes": args.takes,
        "budget": args.budget,
        "epochs": args.epochs,
        "train_epochs": args.train_epochs,
        "minutes": (time.perf_counter() - started) / 60,
        "runs": runs,
    }
    write(doc, args.out)
    print((args.out / "held_out_speaker.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
