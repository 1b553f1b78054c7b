"""Speech for the synthetic corpus: espeak-ng words, phoneme timing, utterance audio.

Each word is synthesised on its own once per voice (the vocabulary is ~51 words), trimmed
of silence and resampled to 16 kHz; an utterance concatenates cached words with small gaps.
This gives exact word boundaries. Phoneme boundaries are approximate: espeak-ng's phoneme
string for the word (`-x`) is spread over the word's duration, weighted by a rough length
per phoneme (vowels longer than stops), which is enough to drive the rendered mouth.

espeak-ng runs here with an argument list, never a shell string; resampling to 16 kHz is
data/media.py's (`media.resample`, through the binary that writes the corpus's video).
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import wave
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from avsrctl.data.manifest import SAMPLE_RATE, SAMPLES_PER_FRAME
from avsrctl.data.media import resample
from avsrctl.errors import AvsrError, MediaError, UsageError

ESPEAK_RATE = 22_050  # Hz, espeak-ng's native output rate
# Native English MBROLA diphone voices (recorded human speakers, far more natural than
# espeak-ng's formant voices); espeak-ng drives them as "mb-<name>" at 16 kHz.
MBROLA_VOICES = ("en1", "us1", "us2", "us3")
MBROLA_DIRS = ("/usr/share/mbrola", "/usr/local/share/mbrola")
WORD_PAD_S = 0.25  # silence between words in the one resampling pass, absorbs filter ringing
TRIM_DB = -36.0  # a word starts/ends where the level first/last exceeds peak - 36 dB
TRIM_MARGIN_S = 0.012  # keep a little of the onset/release around the trimmed word

# espeak-ng phoneme symbols (`-x`, Kirshenbaum-like) -> viseme sequence with rough lengths.
# Diphthongs and r-coloured vowels are two visemes so the mouth glides between them.
_V = 1.0  # plain vowel
_PHONEMES: dict[str, tuple[tuple[str, float], ...]] = {
    "p": (("bilabial", 0.7),),
    "b": (("bilabial", 0.6),),
    "m": (("bilabial", 0.7),),
    "f": (("labiodental", 0.8),),
    "v": (("labiodental", 0.6),),
    "T": (("dental", 0.8),),
    "D": (("dental", 0.5),),
    "s": (("sibilant", 0.9),),
    "z": (("sibilant", 0.7),),
    "S": (("postalveolar", 0.9),),
    "Z": (("postalveolar", 0.7),),
    "tS": (("postalveolar", 0.9),),
    "dZ": (("postalveolar", 0.8),),
    "t": (("alveolar", 0.6),),
    "d": (("alveolar", 0.5),),
    "n": (("alveolar", 0.6),),
    "l": (("lateral", 0.6),),
    "L": (("lateral", 0.6),),
    "k": (("velar", 0.6),),
    "g": (("velar", 0.5),),
    "N": (("velar", 0.6),),
    "x": (("velar", 0.7),),
    "h": (("glottal", 0.5),),
    "?": (("glottal", 0.3),),
    "r": (("rhotic", 0.5),),
    "R": (("rhotic", 0.5),),
    "w": (("round", 0.5),),
    "j": (("palatal", 0.4),),
    "i": (("i", _V),),
    "I": (("I", 0.8 * _V),),
    "e": (("e", _V),),
    "E": (("e", 0.9 * _V),),
    "a": (("a", _V),),
    "A": (("a", 1.1 * _V),),
    "0": (("O", _V),),
    "O": (("O", 1.1 * _V),),
    "o": (("O", _V),),
    "V": (("V", 0.9 * _V),),
    "@": (("@", 0.6 * _V),),
    "3": (("@", _V),),
    "U": (("U", 0.8 * _V),),
    "u": (("u", _V),),
    "Y": (("U", _V),),
    "aI": (("a", 0.9), ("I", 0.7)),
    "aU": (("a", 0.9), ("U", 0.7)),
    "eI": (("e", 0.9), ("I", 0.6)),
    "oU": (("O", 0.9), ("U", 0.7)),
    "OI": (("O", 0.9), ("I", 0.7)),
    "@U": (("@", 0.7), ("U", 0.7)),
    "i@": (("i", 0.8), ("@", 0.5)),
    "I@": (("I", 0.8), ("@", 0.5)),
    "e@": (("e", 0.9), ("@", 0.5)),
    "U@": (("U", 0.8), ("@", 0.5)),
    "A@": (("a", 1.0), ("rhotic", 0.5)),
    "o@": (("O", 0.9), ("rhotic", 0.5)),
    "O@": (("O", 0.9), ("@", 0.5)),
    "@L": (("@", 0.4), ("lateral", 0.5)),
}
_SYMBOLS = sorted(_PHONEMES, key=len, reverse=True)  # longest match first ("aI" before "a")
_DROP = re.compile(r"[',%=#!\-\[\]^1-9]")  # stress, variant and tie marks ("0" is a vowel, kept)
_LONG = 1.35  # ":" lengthens the vowel before it


@dataclass(frozen=True)
class Voice:
    """How one synthetic speaker sounds (espeak-ng arguments plus pacing)."""

    language: str  # espeak-ng voice, e.g. "en-us", "en-gb-x-rp"
    variant: str  # espeak-ng variant file, e.g. "f3", "m5"; "" for the plain voice
    rate: int  # words per minute (espeak -s)
    pitch: int  # 0-99 (espeak -p)
    amplitude: int  # espeak -a
    gap_s: float  # mean pause between words

    @property
    def espeak_name(self) -> str:
        return f"{self.language}+{self.variant}" if self.variant else self.language


@dataclass(frozen=True)
class WordBank:
    """One voice's words: 16 kHz float32 audio (silence trimmed) and viseme segments."""

    audio: dict[str, np.ndarray]  # word -> (S,) float32
    visemes: dict[str, tuple[tuple[str, float], ...]]  # word -> ((viseme, relative length), ...)


@dataclass(frozen=True)
class SpokenUtterance:
    """Audio of one utterance with exact word and approximate viseme timing (seconds)."""

    audio: np.ndarray  # (640 * n_frames,) float32 in [-1, 1]
    n_frames: int  # 25 Hz video frames
    words: tuple[tuple[str, float, float], ...]  # (word, start, end)
    visemes: tuple[tuple[str, float, float], ...]  # (viseme, start, end), silence not listed


@lru_cache(maxsize=1)
def espeak_exe() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise UsageError(
            "espeak-ng is not installed; demo-data synthesises speech with it",
            hint="install it: `apt-get install espeak-ng` (Debian/Ubuntu) or `brew install espeak-ng`",
        )
    return exe


def _run(args: list[str], what: str, input_bytes: bytes | None = None) -> bytes:
    return _run_both(args, what, input_bytes)[0]


def _run_both(args: list[str], what: str, input_bytes: bytes | None = None) -> tuple[bytes, bytes]:
    proc = subprocess.run(args, input=input_bytes, capture_output=True, check=False)
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
        raise AvsrError(f"{what} failed (exit {proc.returncode}): {tail[0]}")
    return proc.stdout, proc.stderr


def installed_voices() -> tuple[list[str], list[str]]:
    """English espeak-ng voices (built-in, not mbrola) and variant names installed here."""
    out = _run([espeak_exe(), "--voices=en"], "espeak-ng --voices=en").decode("utf-8", "replace")
    languages = []
    for line in out.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5 and fields[4].startswith("gmw/") and fields[1] not in languages:
            languages.append(fields[1])
    out = _run([espeak_exe(), "--voices=variant"], "espeak-ng --voices=variant").decode("utf-8", "replace")
    variants = [f[4][3:] for f in (ln.split() for ln in out.splitlines()[1:]) if len(f) >= 5 and f[4].startswith("!v/")]
    if not languages:
        raise UsageError("espeak-ng has no English voices installed", hint="install the espeak-ng-data package")
    return sorted(languages), sorted(set(variants))


def installed_mbrola() -> list[str]:
    """The MBROLA English voices espeak-ng can use here, as espeak-ng voice names ("mb-en1")."""
    return [
        f"mb-{name}"
        for name in MBROLA_VOICES
        if any((Path(d) / name / name).is_file() or (Path(d) / name).is_file() for d in MBROLA_DIRS)
    ]


def parse_phonemes(text: str) -> tuple[tuple[str, float], ...]:
    """espeak-ng `-x --sep=_` output of one word -> ((viseme, relative length), ...)."""
    out: list[tuple[str, float]] = []
    for token in re.split(r"[_\s]+", text.strip()):
        long = ":" in token
        token = _DROP.sub("", token.replace(":", ""))
        i = 0
        while i < len(token):
            sym = next((s for s in _SYMBOLS if token.startswith(s, i)), None)
            if sym is None:  # unknown symbol: a neutral consonant keeps the timing sensible
                out.append(("alveolar", 0.5))
                i += 1
                continue
            segs = _PHONEMES[sym]
            if long:
                segs = tuple((v, w * _LONG) for v, w in segs)
            out.extend(segs)
            i += len(sym)
    return tuple(out)


def _espeak(voice: Voice, word: str) -> tuple[np.ndarray, int, tuple[tuple[str, float], ...]]:
    """One word: 16-bit samples, their rate (22.05 kHz, or 16 kHz for MBROLA) and its visemes,
    from a single espeak-ng run (WAV on stdout, the phoneme string it spoke on stderr)."""
    args = [
        espeak_exe(),
        "--stdout",
        "-x",
        "--sep=_",
        "--phonout=/dev/stderr",
        "-v",
        voice.espeak_name,
        "-s",
        str(voice.rate),
        "-p",
        str(voice.pitch),
        "-a",
        str(voice.amplitude),
        word,
    ]
    data, err = _run_both(args, f"espeak-ng {voice.espeak_name} {word!r}")
    lines = [ln for ln in err.decode("utf-8", "replace").splitlines() if ln.strip()]
    segs = parse_phonemes(lines[-1]) if lines else ()
    try:
        with wave.open(io.BytesIO(data)) as w:  # espeak streams with a placeholder length: read what is there
            rate, width, raw = w.getframerate(), w.getsampwidth(), w.readframes(w.getnframes())
    except (wave.Error, EOFError) as e:
        raise MediaError(f"espeak-ng {voice.espeak_name} {word!r}: unreadable WAV output ({e})") from None
    if rate not in (ESPEAK_RATE, SAMPLE_RATE) or width != 2:
        raise MediaError(
            f"espeak-ng {voice.espeak_name}: expected 16-bit {ESPEAK_RATE} or {SAMPLE_RATE} Hz, "
            f"got {8 * width}-bit {rate} Hz"
        )
    return np.frombuffer(raw, dtype="<i2"), rate, segs or (("@", 1.0),)


def _resample(samples: np.ndarray, rate: int) -> np.ndarray:
    """int16 at `rate` -> float32 at 16 kHz (ffmpeg's resampler, the binary that writes demo-data's clips)."""
    if rate == SAMPLE_RATE:
        return samples.astype(np.float32) / np.float32(32768.0)
    return resample(samples, rate, reproducible=True)


def trim_silence(x: np.ndarray) -> np.ndarray:
    """Cut leading/trailing silence (below peak - 36 dB), keeping a 12 ms margin."""
    env = np.abs(x)
    peak = float(env.max()) if x.size else 0.0
    if peak <= 0.0:
        return x[:0]
    loud = np.flatnonzero(env > peak * 10 ** (TRIM_DB / 20))
    margin = int(TRIM_MARGIN_S * SAMPLE_RATE)
    start, end = max(0, loud[0] - margin), min(x.size, loud[-1] + 1 + margin)
    return x[start:end]


def build_word_bank(voice: Voice, words: list[str]) -> WordBank:
    """Synthesise every word once for this voice; one ffmpeg call resamples them all."""
    spoken = {word: _espeak(voice, word) for word in words}
    rate = spoken[words[0]][1] if words else ESPEAK_RATE
    if any(r != rate for _, r, _ in spoken.values()):
        raise MediaError(f"espeak-ng {voice.espeak_name}: words came back at different sample rates")
    # every word starts on a multiple of 441 input samples (= 320 output samples at 22.05 kHz),
    # so a word resamples to the same output whichever words share the pass
    step = rate // np.gcd(rate, SAMPLE_RATE)
    pad = np.zeros(step * round(WORD_PAD_S * rate / step), dtype=np.int16)
    pieces, starts, pos, visemes = [], [], 0, {}
    for word in words:
        x, _, visemes[word] = spoken[word]
        align = np.zeros((-(pos + pad.size + x.size)) % step, dtype=np.int16)
        pieces += [pad, x, align]
        starts.append((pos + pad.size, pos + pad.size + x.size))
        pos += pad.size + x.size + align.size
    pieces.append(pad)
    y = _resample(np.concatenate(pieces), rate)
    scale = SAMPLE_RATE / rate
    audio = {}
    for word, (a, b) in zip(words, starts):
        # the padding keeps resampler ringing of neighbours out of each word's window
        lo, hi = round(a * scale) - int(0.1 * SAMPLE_RATE), round(b * scale) + int(0.1 * SAMPLE_RATE)
        seg = trim_silence(y[max(0, lo) : hi])
        if seg.size == 0:
            raise MediaError(f"espeak-ng {voice.espeak_name} produced silence for {word!r}")
        audio[word] = seg.astype(np.float32)
    return WordBank(audio, visemes)


def speak(bank: WordBank, words: list[str], voice: Voice, rng: np.random.Generator) -> SpokenUtterance:
    """Concatenate cached words with speaker-dependent pauses; exact 640 samples per frame."""
    lead, trail = rng.uniform(0.15, 0.45), rng.uniform(0.15, 0.40)
    chunks = [np.zeros(int(lead * SAMPLE_RATE), np.float32)]
    pos = chunks[0].size
    spans, visemes = [], []
    for k, word in enumerate(words):
        if k:
            gap = np.zeros(int(max(0.0, voice.gap_s * rng.uniform(0.5, 1.5)) * SAMPLE_RATE), np.float32)
            chunks.append(gap)
            pos += gap.size
        x = bank.audio[word] * np.float32(10 ** (rng.uniform(-1.5, 1.5) / 20))  # small loudness drift
        start, end = pos / SAMPLE_RATE, (pos + x.size) / SAMPLE_RATE
        spans.append((word, start, end))
        visemes += spread_visemes(bank.visemes[word], start, end)
        chunks.append(x)
        pos += x.size
    chunks.append(np.zeros(int(trail * SAMPLE_RATE), np.float32))
    audio = np.concatenate(chunks)
    n_frames = max(1, round(audio.size / SAMPLES_PER_FRAME))
    audio = np.pad(audio, (0, max(0, n_frames * SAMPLES_PER_FRAME - audio.size)))[: n_frames * SAMPLES_PER_FRAME]
    audio = audio + rng.normal(0.0, 10 ** (rng.uniform(-62, -52) / 20), audio.size).astype(np.float32)  # room floor
    peak = float(np.abs(audio).max())
    if peak > 0.99:
        audio *= np.float32(0.99 / peak)
    return SpokenUtterance(audio.astype(np.float32), n_frames, tuple(spans), tuple(visemes))


def spread_visemes(segs: tuple[tuple[str, float], ...], start: float, end: float) -> list[tuple[str, float, float]]:
    """Share [start, end) among the word's visemes in proportion to their rough lengths."""
    total = sum(w for _, w in segs)
    out, t = [], start
    for name, w in segs:
        dt = (end - start) * w / total
        out.append((name, t, t + dt))
        t += dt
    return out
