#!/usr/bin/python3
"""Generate golden MFCC fixtures with torchaudio for the TypeScript MFCC tests.

Run from anywhere (paths are resolved from the repo root):

    /usr/bin/python3 scripts/golden_mfcc.py

Needs Debian's python3 with `python3-torchaudio python3-soundfile python3-scipy` (torch 1.13 / torchaudio 0.13.1
were used for the committed fixtures). Writes `test/fixtures/golden/*.json` and the synthetic input WAVs
`test/fixtures/golden/synth_*.wav`. See `test/fixtures/golden/README.md` for the MFCC definition.

Exits non-zero if a cross-check fails.
"""

import json
import math
import os
import struct
import sys
import warnings

import numpy as np
import scipy.fft
import scipy.signal
import soundfile as sf
import torch
import torchaudio

# Everything in float64: melscale_fbanks / create_dct build their grids with the default dtype.
torch.set_default_dtype(torch.float64)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AUDIO_DIR = os.path.join(ROOT, "test", "fixtures", "audio")
OUT_DIR = os.path.join(ROOT, "test", "fixtures", "golden")

SR = 16000
SEED = 20240611
MAX_FRAMES_STORED = 150
SIG_DIGITS = 9

DEFAULT_CONFIG = {
    "sampleRate": 16000,
    "winLength": 400,
    "hop": 160,
    "nFft": 512,
    "window": "hamming",
    "preEmphasis": 0.97,
    "nMels": 40,
    "fMin": 300,
    "fMax": 3400,
    "logFloor": 1e-10,
    "nMfcc": 40,
    "lifter": 0,
    "deltaOrder": 0,
    "deltaWindow": 2,
}

ALT_CONFIG = dict(
    DEFAULT_CONFIG,
    window="hann",
    preEmphasis=0,
    nMels=26,
    fMin=0,
    fMax=8000,
    nMfcc=13,
    lifter=22,
    deltaOrder=2,
    deltaWindow=2,
    nFft=1024,
    winLength=400,
    hop=160,
)

# Real clips (FLAC only: exact int16/32768 samples in every decoder).
REAL_CLIPS = [
    "YAF_back_angry.flac",
    "YAF_back_neutral.flac",
    "03-01-05-02-01-01-21.flac",
    "03-01-01-01-01-01-21.flac",
    "OAF_back_angry.flac",
    "03-01-05-01-01-01-22.flac",
]

# Inputs that also get a `.alt.json` fixture with ALT_CONFIG.
ALT_INPUTS = {"03-01-05-02-01-01-21", "synth_chirp"}

# The shipped model's analysis at 8 kHz (NARROWBAND_FEATURE_CONFIG in src/features/config.ts).
NARROW_CONFIG = dict(DEFAULT_CONFIG, sampleRate=8000, winLength=200, hop=80, nFft=256)
# Real clips taken to 8 kHz (scipy's polyphase 2:1 decimation) and stored as float WAV `<name>.8k.wav`; each gets a
# `<name>.8k.json` fixture with NARROW_CONFIG. The decimation only makes test input: both sides read the same WAV.
NARROW_CLIPS = ["YAF_back_angry.flac", "03-01-05-02-01-01-21.flac"]

REFERENCE = f"torchaudio {torchaudio.__version__} / torch {torch.__version__}"

failures = []
fbank_warnings = []


def fail(msg):
    print("FAIL: " + msg)
    failures.append(msg)


# ---------------------------------------------------------------- synthetic inputs


def synth_signals():
    """Synthetic test signals, float64 in [-1, 1]; they are stored as float32 WAV and re-read."""
    rng = np.random.default_rng(SEED)
    t1 = np.arange(SR) / SR  # 1 s
    sigs = {}
    sigs["synth_sine440"] = 0.5 * np.sin(2 * np.pi * 440.0 * t1)
    sigs["synth_chirp"] = 0.5 * scipy.signal.chirp(t1, f0=100.0, t1=1.0, f1=7900.0, method="linear")
    sigs["synth_noise"] = np.clip(0.1 * rng.standard_normal(SR // 2), -1.0, 1.0)
    imp = np.zeros(SR // 2)
    imp[len(imp) // 2] = 0.5
    sigs["synth_impulse"] = imp
    sigs["synth_short"] = np.clip(0.1 * rng.standard_normal(300), -1.0, 1.0)
    return sigs


def strip_peak_chunk(path):
    """libsndfile adds a PEAK chunk holding a timestamp to float WAVs; drop it so reruns give identical bytes."""
    with open(path, "rb") as fh:
        data = fh.read()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    chunks, pos = [], 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        end = pos + 8 + size + (size & 1)
        if cid != b"PEAK":
            chunks.append(data[pos:end])
        pos = end
    body = b"WAVE" + b"".join(chunks)
    with open(path, "wb") as fh:
        fh.write(b"RIFF" + struct.pack("<I", len(body)) + body)


def write_and_reread_wav(name, x, rate=SR):
    path = os.path.join(OUT_DIR, name + ".wav")
    sf.write(path, x.astype(np.float32), rate, subtype="FLOAT")
    strip_peak_chunk(path)
    y, sr = sf.read(path, dtype="float64", always_2d=False)
    assert sr == rate and y.ndim == 1 and len(y) == len(x)
    if np.max(np.abs(y - x.astype(np.float32).astype(np.float64))) != 0:
        fail(f"{name}: WAV round trip is not exact")
    return y


def read_real(fname):
    x, sr = sf.read(os.path.join(AUDIO_DIR, fname), dtype="float64", always_2d=False)
    if sr != SR:
        raise SystemExit(f"{fname}: sample rate {sr}, expected {SR}")
    if x.ndim != 1:
        raise SystemExit(f"{fname}: not mono")
    # FLAC 16-bit: must be exact multiples of 1/32768
    if not np.all(x * 32768.0 == np.round(x * 32768.0)):
        fail(f"{fname}: samples are not int16/32768")
    return x


# ---------------------------------------------------------------- the MFCC definition


def window_tensor(kind, n):
    if kind == "hamming":
        return torch.hamming_window(n, periodic=False, dtype=torch.float64)
    if kind == "hann":
        return torch.hann_window(n, periodic=False, dtype=torch.float64)
    raise ValueError(kind)


def mel_fbanks(cfg, where):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fb = torchaudio.functional.melscale_fbanks(
            n_freqs=cfg["nFft"] // 2 + 1,
            f_min=float(cfg["fMin"]),
            f_max=float(cfg["fMax"]),
            n_mels=cfg["nMels"],
            sample_rate=cfg["sampleRate"],
            norm=None,
            mel_scale="htk",
        ).to(torch.float64)
    for w in caught:
        empty = torch.nonzero(fb.max(dim=0).values == 0.0).flatten().tolist()
        key = (cfg["nFft"], cfg["fMin"], cfg["fMax"], cfg["nMels"])
        msg = f"{where}: melscale_fbanks warning {key}: {w.message} -> all-zero filters {empty}"
        if msg not in fbank_warnings:
            fbank_warnings.append(msg)
    return fb


def pre_emphasis(x, a):
    y = x.clone()
    if a != 0:
        y[1:] = x[1:] - a * x[:-1]
    return y


def n_frames(n, cfg):
    w, h = cfg["winLength"], cfg["hop"]
    return (n - w) // h + 1 if n >= w else 0


def mfcc_reference(x_np, cfg, where):
    """Steps 1-9. Returns (frames K, mel energies E [K, nMels], log-mel L, final output [K, D])."""
    x = torch.from_numpy(np.asarray(x_np, dtype=np.float64))
    w, h, nfft = cfg["winLength"], cfg["hop"], cfg["nFft"]
    y = pre_emphasis(x, cfg["preEmphasis"])  # 1
    k = n_frames(len(y), cfg)
    fb = mel_fbanks(cfg, where)
    dct = torchaudio.functional.create_dct(cfg["nMfcc"], cfg["nMels"], norm="ortho").to(torch.float64)
    ncoef = cfg["nMfcc"] * (1 + cfg["deltaOrder"])
    if k == 0:
        z = torch.zeros(0, cfg["nMels"])
        return 0, z, z, torch.zeros(0, ncoef)
    frames = torch.stack([y[i * h : i * h + w] for i in range(k)])  # 2  [K, winLength]
    frames = frames * window_tensor(cfg["window"], w)  # 3
    padded = torch.nn.functional.pad(frames, (0, nfft - w))  # 4
    spec = torch.fft.rfft(padded, n=nfft, dim=-1)
    power = spec.real**2 + spec.imag**2  # [K, nFft/2+1]
    energies = power @ fb  # 5
    logmel = torch.log(torch.clamp(energies, min=cfg["logFloor"]))  # 6
    c = logmel @ dct  # 7
    lif = cfg["lifter"]
    if lif > 0:  # 8
        i = torch.arange(cfg["nMfcc"], dtype=torch.float64)
        c = c * (1.0 + (lif / 2.0) * torch.sin(math.pi * i / lif))
    out = [c]
    if cfg["deltaOrder"] >= 1:  # 9
        win = 2 * cfg["deltaWindow"] + 1
        d1 = torchaudio.functional.compute_deltas(c.T.contiguous(), win_length=win, mode="replicate")
        out.append(d1.T)
        if cfg["deltaOrder"] >= 2:
            d2 = torchaudio.functional.compute_deltas(d1, win_length=win, mode="replicate")
            out.append(d2.T)
    return k, energies, logmel, torch.cat(out, dim=1)


# ---------------------------------------------------------------- cross-checks


def crosscheck_melspectrogram(x_np, cfg, energies, where):
    """Mel power spectrogram via torchaudio.transforms.MelSpectrogram; returns stats vs step 5."""
    w, h, nfft = cfg["winLength"], cfg["hop"], cfg["nFft"]
    x = torch.from_numpy(np.asarray(x_np, dtype=np.float64))
    y = pre_emphasis(x, cfg["preEmphasis"])
    y = torch.nn.functional.pad(y, (0, nfft - w))
    if len(y) < nfft:  # torch.stft refuses a signal shorter than n_fft; no frame either way
        if energies.shape[0] != 0:
            fail(f"{where}: reference has frames but the signal is shorter than one window")
        return 0, 0.0, 0.0, 0.0

    def window_fn(n, **_kw):
        assert n == nfft
        return torch.nn.functional.pad(window_tensor(cfg["window"], w), (0, nfft - w))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # same fbank warning as in mel_fbanks(), already recorded
        ms = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg["sampleRate"],
            n_fft=nfft,
            win_length=nfft,
            hop_length=h,
            f_min=float(cfg["fMin"]),
            f_max=float(cfg["fMax"]),
            n_mels=cfg["nMels"],
            window_fn=window_fn,
            center=False,
            power=2.0,
            norm=None,
            mel_scale="htk",
        ).to(torch.float64)
    other = ms(y).T  # [frames, nMels]
    k = min(other.shape[0], energies.shape[0])
    if other.shape[0] != energies.shape[0]:
        fail(f"{where}: MelSpectrogram gives {other.shape[0]} frames, reference {energies.shape[0]}")
    a, b = energies[:k], other[:k]
    if k == 0:
        return k, 0.0, 0.0, 0.0
    diff = (a - b).abs()
    # relative difference over the entries that survive the log floor; entries below it are all clamped
    mask = torch.maximum(a, b) > cfg["logFloor"]
    rel = (diff[mask] / torch.maximum(a, b)[mask]).max().item() if mask.any() else 0.0
    floor = cfg["logFloor"]
    dlog = (torch.log(a.clamp(min=floor)) - torch.log(b.clamp(min=floor))).abs().max().item()
    return k, rel, diff.max().item(), dlog


def numpy_mfcc(x, cfg):
    """Independent numpy/scipy implementation of the same definition (no torch), for a sanity check."""
    w, h, nfft, sr = cfg["winLength"], cfg["hop"], cfg["nFft"], cfg["sampleRate"]
    a = cfg["preEmphasis"]
    y = np.concatenate([x[:1], x[1:] - a * x[:-1]]) if len(x) else x.copy()
    k = (len(y) - w) // h + 1 if len(y) >= w else 0
    ncoef = cfg["nMfcc"] * (1 + cfg["deltaOrder"])
    if k == 0:
        return np.zeros((0, cfg["nMels"])), np.zeros((0, ncoef))
    n = np.arange(w)
    if cfg["window"] == "hamming":
        win = 0.54 - 0.46 * np.cos(2 * np.pi * n / (w - 1))
    else:
        win = 0.5 - 0.5 * np.cos(2 * np.pi * n / (w - 1))
    frames = np.stack([y[i * h : i * h + w] for i in range(k)]) * win
    p = np.abs(np.fft.rfft(frames, n=nfft, axis=1)) ** 2
    # HTK triangular filters on the mel scale, evaluated at the FFT bin frequencies
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)
    hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    pts = hz(np.linspace(mel(cfg["fMin"]), mel(cfg["fMax"]), cfg["nMels"] + 2))
    freqs = np.linspace(0, sr // 2, nfft // 2 + 1)
    fb = np.zeros((nfft // 2 + 1, cfg["nMels"]))
    for m in range(cfg["nMels"]):
        lo, c, hi = pts[m], pts[m + 1], pts[m + 2]
        up = (freqs - lo) / (c - lo)
        down = (hi - freqs) / (hi - c)
        fb[:, m] = np.maximum(0.0, np.minimum(up, down))
    logmel = np.log(np.maximum(p @ fb, cfg["logFloor"]))
    c = scipy.fft.dct(logmel, type=2, norm="ortho", axis=1)[:, : cfg["nMfcc"]]
    if cfg["lifter"] > 0:
        L = cfg["lifter"]
        c = c * (1 + (L / 2) * np.sin(np.pi * np.arange(cfg["nMfcc"]) / L))
    out = [c]
    prev = c
    nn = cfg["deltaWindow"]
    denom = 2 * sum(i * i for i in range(1, nn + 1))
    for _ in range(cfg["deltaOrder"]):
        pad = np.concatenate([np.repeat(prev[:1], nn, 0), prev, np.repeat(prev[-1:], nn, 0)])
        d = sum(i * (pad[nn + i : nn + i + k] - pad[nn - i : nn - i + k]) for i in range(1, nn + 1)) / denom
        out.append(d)
        prev = d
    return logmel, np.concatenate(out, axis=1)


# ---------------------------------------------------------------- output


def fmt(v):
    f = float(f"{v:.{SIG_DIGITS}g}")
    if not math.isfinite(f):
        raise ValueError("non-finite value")
    return f


def rows(t):
    return [[fmt(v) for v in row] for row in t.tolist()]


def write_fixture(fname, source, cfg, k, logmel, out):
    stored = min(k, MAX_FRAMES_STORED)
    doc = {
        "source": source,
        "reference": REFERENCE,
        "config": cfg,
        "frames": k,
        "framesStored": stored,
        "logMel": rows(logmel[:stored]),
        "mfcc": rows(out[:stored]),
    }
    path = os.path.join(OUT_DIR, fname)
    with open(path, "w") as fh:
        json.dump(doc, fh, separators=(",", ":"))
        fh.write("\n")
    return path


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    print(REFERENCE, "| numpy", np.__version__, "| soundfile", sf.__version__)

    inputs = []  # (name, source path relative to repo root, samples)
    for fname in REAL_CLIPS:
        name = os.path.splitext(fname)[0]
        inputs.append((name, f"test/fixtures/audio/{fname}", read_real(fname)))
    for name, x in synth_signals().items():
        inputs.append((name, f"test/fixtures/golden/{name}.wav", write_and_reread_wav(name, x)))
    for fname in NARROW_CLIPS:
        name = os.path.splitext(fname)[0] + ".8k"
        x = scipy.signal.resample_poly(read_real(fname), 1, 2)
        inputs.append((name, f"test/fixtures/golden/{name}.wav", write_and_reread_wav(name, x, 8000)))

    worst_np = 0.0
    print()
    print(f"{'input':30s} {'cfg':4s} {'N':>6s} {'K':>4s}  MelSpectrogram: rel(E>floor)  abs(E)      |dlog|     numpy: |dlogMel|  |dmfcc|/(1+|mfcc|)")
    for name, source, x in inputs:
        jobs = [("default", DEFAULT_CONFIG, f"{name}.json")]
        if name.endswith(".8k"):
            jobs = [("8k", NARROW_CONFIG, f"{name}.json")]
        if name in ALT_INPUTS:
            jobs.append(("alt", ALT_CONFIG, f"{name}.alt.json"))
        for tag, cfg, fname in jobs:
            k, energies, logmel, out = mfcc_reference(x, cfg, f"{name} [{tag}]")
            if k != n_frames(len(x), cfg):
                fail(f"{name}: frame count")
            if name == "synth_short" and k != 0:
                fail(f"{name}: expected 0 frames, got {k}")
            if not torch.isfinite(out).all():
                fail(f"{name} [{tag}]: non-finite output")
            # numpy cross-check of the whole definition (both configs)
            np_logmel, np_out = numpy_mfcc(x, cfg)
            dl = float(np.max(np.abs(np_logmel - logmel.numpy()))) if k else 0.0
            dm = float(np.max(np.abs(np_out - out.numpy()) / (1.0 + np.abs(out.numpy())))) if k else 0.0
            worst_np = max(worst_np, dl, dm)
            if dl > 1e-9 or dm > 1e-9:
                fail(f"{name} [{tag}]: numpy re-implementation differs (logMel {dl:.3g}, mfcc {dm:.3g})")
            line = f"{name:30s} {tag:4s} {len(x):6d} {k:4d}  "
            if tag in ("default", "8k"):
                kk, rel, absd, dlog = crosscheck_melspectrogram(x, cfg, energies, name)
                line += f"               {rel:9.2e}  {absd:9.2e}  {dlog:9.2e}"
                if rel > 1e-9 or dlog > 1e-9:
                    fail(f"{name}: MelSpectrogram cross-check rel {rel:.3g}, dlog {dlog:.3g}")
            else:
                line += " " * 48
            line += f"        {dl:9.2e}  {dm:9.2e}"
            print(line)
            write_fixture(fname, source, cfg, k, logmel, out)

    print()
    for tag, cfg in (("default", DEFAULT_CONFIG), ("alt", ALT_CONFIG), ("8k", NARROW_CONFIG)):
        fb = mel_fbanks(cfg, f"filterbank [{tag}]")
        nz = (fb > 0).sum(dim=0)
        m = int(nz.argmin())
        print(
            f"mel filterbank [{tag}]: {cfg['nMels']} filters {cfg['fMin']}-{cfg['fMax']} Hz on {cfg['nFft'] // 2 + 1} bins;"
            f" narrowest filter #{m} spans {int(nz[m])} non-zero bins (peak weight {fb[:, m].max().item():.4f})"
        )
    for w in fbank_warnings:
        print("NOTE:", w)
    if not fbank_warnings:
        print("no melscale_fbanks warnings (no all-zero mel filter)")

    print()
    total = 0
    for f in sorted(os.listdir(OUT_DIR)):
        size = os.path.getsize(os.path.join(OUT_DIR, f))
        total += size
        print(f"  {size:9d}  test/fixtures/golden/{f}")
    print(f"  {total:9d}  total ({total / 1e6:.2f} MB)")
    if total > 3_000_000:
        fail(f"fixtures folder is {total} bytes (> 3 MB)")

    if failures:
        print(f"\n{len(failures)} check(s) FAILED")
        return 1
    print("\nall cross-checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
