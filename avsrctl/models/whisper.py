"""Whisper audio encoder at the real utterance length, with its log-mel front end in torch.

Whisper was trained on 30 s windows: 480000 samples -> 3000 mel frames -> 1500 encoder
frames. Hugging Face's `WhisperEncoder.forward` refuses anything else, and padding a 3 s
clip to 30 s costs ~10x the compute, so `WhisperAudioEncoder` runs the encoder's own
modules (conv1, conv2, positional embedding, layers, final layer norm) on the real length:

    audio (B, S=640*T) --log-mel--> (B, n_mels, 4T) --conv1, conv2/2--> (B, 2T, D) --layers--> (B, 2T, D)

Differences from the padded 30 s run, by design:
- The valid frames do not attend to the silence padding, so they are not equal to a padded
  run's. On tiny.en and real speech (benchmarks/bench_whisper_length.py) the mean cosine
  is 0.89 (1 s), 0.95 (3 s), 0.99 (10 s), but one or two frames per clip take over the role
  of attention sink that the padding plays in a 30 s run and come out unlike it (cosine ~0).
  Training and inference both use the real length, so the connector sees one consistent
  distribution; the speed-up is ~11x at 3 s.
- The mel frames are exactly those of WhisperFeatureExtractor (zeros after the audio, the
  per-utterance max-8 clamp), including the one frame past the end that the last valid
  frame's convolutions see, so the convolution stage matches the padded run exactly.

Batches: each row's audio past its length is zeroed, its mel clamp uses its own frames, and
an attention mask hides every key past the row's length, so a row's valid frames match
running it alone (up to float rounding); frames past a row's length are garbage that
downstream code masks.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from avsrctl.config import AudioEncoderConfig
from avsrctl.data.align import WHISPER_FRAMES_PER_VIDEO_FRAME
from avsrctl.data.manifest import SAMPLE_RATE, SAMPLES_PER_FRAME, VIDEO_FPS
from avsrctl.errors import ModelError
from avsrctl.models.weights import hub_error, is_offline_name, offline_path, params_fingerprint, path_fingerprint

N_FFT = 400  # 25 ms window
HOP_LENGTH = 160  # 10 ms hop: 100 mel frames per second
MEL_PER_FRAME = SAMPLES_PER_FRAME // HOP_LENGTH  # 4 mel frames per 25 Hz video frame (2 encoder frames)
FPV = WHISPER_FRAMES_PER_VIDEO_FRAME  # 2 encoder frames (50 Hz) per video frame (25 Hz)
LOG_FLOOR_DB = 8.0  # log10 values below (max - 8) are clamped, as in Whisper


class LogMelSpectrogram(nn.Module):
    """Whisper's log-mel features for a zero-padded batch, row by row equal to WhisperFeatureExtractor."""

    def __init__(self, n_mels: int):
        super().__init__()
        from transformers.audio_utils import mel_filter_bank

        filters = mel_filter_bank(
            num_frequency_bins=1 + N_FFT // 2,
            num_mel_filters=n_mels,
            min_frequency=0.0,
            max_frequency=SAMPLE_RATE / 2,
            sampling_rate=SAMPLE_RATE,
            norm="slaney",
            mel_scale="slaney",
        )  # (n_freq, n_mels), the feature extractor's own filters
        self.n_mels = n_mels
        # Not persistent: derived from n_mels, so they never belong in a checkpoint.
        self.register_buffer(
            "filters", torch.from_numpy(filters.T.copy()).float(), persistent=False
        )  # (n_mels, n_freq)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def forward(self, audio: torch.Tensor, n_samples: torch.Tensor, n_frames: int) -> torch.Tensor:
        """audio (B, S), n_samples (B,) valid samples per row -> (B, n_mels, n_frames); S > 200.

        Frame i is centred on sample 160*i (the extractor's `center=True` STFT): the start is
        reflect-padded, and everything after a row's n_samples is zeros, as in the extractor's
        30 s padding. The max-8 clamp of each row uses the frames the extractor would see.
        """
        B, S = audio.shape
        t = torch.arange(S, device=audio.device)
        audio = torch.where(t[None, :] < n_samples[:, None], audio.float(), 0.0)  # (B, S), zeros past each length
        half = N_FFT // 2
        left = F.pad(audio[:, None, :], (half, 0), mode="reflect")[:, 0]  # (B, half + S)
        need = half + (n_frames - 1) * HOP_LENGTH + half  # samples the last wanted frame's window ends at
        padded = F.pad(left, (0, max(0, need - left.shape[1])))[:, :need]  # (B, need), zeros on the right
        spec = torch.stft(padded, N_FFT, HOP_LENGTH, window=self.window, center=False, return_complex=True)
        power = spec.abs() ** 2  # (B, n_freq, n_frames)
        log_mel = torch.clamp(self.filters @ power, min=1e-10).log10()  # (B, n_mels, n_frames)

        # The extractor's max runs over all 3000 frames of the padded clip: the utterance's frames,
        # the one frame straddling its end, then silence (log10(1e-10) = -10, never the max).
        n_valid = torch.div(n_samples, HOP_LENGTH, rounding_mode="floor") + 1  # (B,)
        frame = torch.arange(n_frames, device=audio.device)
        seen = (frame[None, :] < n_valid[:, None])[:, None, :]  # (B, 1, n_frames)
        row_max = log_mel.masked_fill(~seen, float("-inf")).amax(dim=(1, 2), keepdim=True)  # (B, 1, 1)
        log_mel = torch.maximum(log_mel, row_max - LOG_FLOOR_DB)
        return (log_mel + 4.0) / 4.0


class WhisperAudioEncoder(nn.Module):
    """A Hugging Face `WhisperEncoder` run on the real length, with its log-mel front end.

    forward(audio (B, S) float32 16 kHz, lengths (B,) in 25 Hz frames) -> (B, 2T, D_a), T = lengths.max().
    """

    def __init__(self, encoder: nn.Module, *, identity: str, frozen: bool = True):
        super().__init__()
        self.encoder = encoder  # transformers WhisperEncoder
        cfg = encoder.config
        self.mel = LogMelSpectrogram(cfg.num_mel_bins)
        self.output_dim: int = cfg.d_model
        self.max_frames: int = cfg.max_source_positions // FPV  # 25 Hz frames in the 30 s window (750)
        self.identity = identity
        self.frozen = frozen
        if cfg._attn_implementation not in ("sdpa", "eager"):
            # Our key mask is a 4-D SDPA/eager mask; other kernels (flash) expect another format.
            encoder.set_attn_implementation("sdpa")
        if frozen:
            self.encoder.requires_grad_(False)
            self.train(False)

    def train(self, mode: bool = True) -> "WhisperAudioEncoder":
        # A frozen encoder stays in eval mode (no dropout) whatever the parent module asks.
        return super().train(mode and not self.frozen)

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.frozen:
            with torch.no_grad():
                return self._encode(audio, lengths)
        return self._encode(audio, lengths)

    def _encode(self, audio: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if audio.dim() != 2 or lengths.dim() != 1 or audio.shape[0] != lengths.shape[0]:
            raise ModelError(
                f"audio encoder expects audio (B, S) and lengths (B,), got {tuple(audio.shape)} "
                f"and {tuple(lengths.shape)}"
            )
        enc = self.encoder
        device = enc.conv1.weight.device
        lengths = lengths.to(device=device, dtype=torch.long)
        T = int(lengths.max()) if lengths.numel() else 0
        if T < 1:
            raise ModelError(f"audio encoder got no frames to encode (lengths {lengths.tolist()})")
        if T > self.max_frames:
            raise ModelError(
                f"utterance of {T} frames ({T / VIDEO_FPS:.1f} s) is longer than Whisper's 30 s window "
                f"({self.max_frames} frames)",
                hint="set data.max_seconds to 30 or less",
            )
        if audio.shape[1] < SAMPLES_PER_FRAME * T:
            raise ModelError(
                f"audio has {audio.shape[1]} samples but lengths need {SAMPLES_PER_FRAME * T} "
                f"({SAMPLES_PER_FRAME} per 25 Hz frame)"
            )
        T_a = FPV * T
        n_mel = MEL_PER_FRAME * T
        # One mel frame past the end (where the 30 s window has room) feeds the last valid
        # frame's convolutions, as in the padded run.
        n_extra = min(1, 2 * enc.config.max_source_positions - n_mel)
        audio = audio[:, : SAMPLES_PER_FRAME * T].to(device)  # (B, S)
        with torch.autocast(device.type, enabled=False):  # mel in float32 even under the caller's autocast
            mel = self.mel(audio, lengths * SAMPLES_PER_FRAME, n_mel + n_extra)  # (B, n_mels, 4T + extra)
        mel = mel.to(enc.conv1.weight.dtype)

        x = F.gelu(enc.conv1(mel))  # (B, D, 4T + extra)
        x = F.gelu(enc.conv2(x))  # (B, D, 2T + extra)
        x = x[:, :, :T_a].transpose(1, 2)  # (B, T_a, D)
        x = x + enc.embed_positions.weight[:T_a]  # the first T_a of the 1500 positions
        x = F.dropout(x, p=enc.dropout, training=self.training)

        mask = None
        if bool((lengths < T).any()):
            # Key mask (B, 1, 1, T_a): padding frames of shorter rows are never attended. SDPA takes
            # it as bool (True = attend) whatever the compute dtype; eager attention adds it.
            valid = torch.arange(T_a, device=device)[None, :] < FPV * lengths[:, None]  # (B, T_a)
            mask = valid[:, None, None, :]  # (B, 1, 1, T_a)
            if enc.config._attn_implementation != "sdpa":
                additive = torch.zeros(mask.shape, dtype=x.dtype, device=device)  # (B, 1, 1, T_a)
                mask = additive.masked_fill(~mask, torch.finfo(x.dtype).min)
        for layer in enc.layers:
            x = layer(x, mask)
        return enc.layer_norm(x)  # (B, T_a, D)


# ---------------------------------------------------------------------------- builders


def _random_encoder(cfg: AudioEncoderConfig):
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config = WhisperConfig(
        num_mel_bins=cfg.n_mels,
        d_model=cfg.d_model,
        encoder_layers=cfg.layers,
        encoder_attention_heads=cfg.heads,
        encoder_ffn_dim=4 * cfg.d_model,
        decoder_layers=1,
        decoder_attention_heads=cfg.heads,
        decoder_ffn_dim=4 * cfg.d_model,
        max_source_positions=1500,
    )
    encoder = WhisperEncoder(config)  # initialised from torch's global RNG: seed it for reproducible weights
    sizes = f"m{cfg.n_mels}-d{cfg.d_model}-l{cfg.layers}-h{cfg.heads}"
    return encoder, f"random:whisper:{sizes}:{params_fingerprint(encoder)}"


def _ct2_encoder(name: str):
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from avsrctl.models.ct2 import convert_ct2_whisper

    folder = offline_path(name) if is_offline_name(name) else Path(name).expanduser()
    converted = convert_ct2_whisper(folder)
    encoder = WhisperEncoder(converted.config)
    missing, unexpected = encoder.load_state_dict(converted.state_dict, strict=False)
    if missing or unexpected:
        raise ModelError(
            f"converted CTranslate2 weights of {folder} do not fit WhisperEncoder "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    label = name[len("offline:") :] if is_offline_name(name) else folder.name
    return encoder, f"ct2:{label}:{converted.fingerprint}"


def _hf_encoder(name: str):
    from transformers import WhisperModel

    try:
        model = WhisperModel.from_pretrained(name, dtype=torch.float32, attn_implementation="sdpa")
    except (OSError, ValueError, KeyError) as e:
        raise hub_error("Whisper model", name, e) from None
    encoder = model.get_encoder()
    folder = Path(name).expanduser()
    if folder.is_dir():
        key = path_fingerprint(folder) or params_fingerprint(encoder)
        return encoder, f"hf:{folder.resolve()}:{key}"
    commit = getattr(model.config, "_commit_hash", None)
    return encoder, f"hf:{name}" + (f"@{commit}" if commit else "")


def build_audio_encoder(cfg: AudioEncoderConfig) -> WhisperAudioEncoder:
    """The audio encoder a config names: 'hf' (hub id or folder), 'ct2' (CTranslate2 folder or
    'offline:tiny.en'), or 'random' (sizes from the config, weights from torch's global seed)."""
    if cfg.source == "random":
        encoder, identity = _random_encoder(cfg)
    elif cfg.source == "ct2":
        encoder, identity = _ct2_encoder(str(cfg.name))
    elif cfg.source == "hf":
        encoder, identity = _hf_encoder(str(cfg.name))
    else:  # the config's Literal makes this unreachable
        raise ModelError(f"unknown audio encoder source '{cfg.source}'")
    return WhisperAudioEncoder(encoder, identity=identity, frozen=cfg.frozen)
