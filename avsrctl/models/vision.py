"""Vision encoder: one feature per video frame from a CLIP-style image tower.

    video (B, T, 3, H, W) uint8 --real frames only--> (N, 3, S, S) normalised --tower--> (N, D) --scatter--> (B, T, D)

Only frames that exist (t < lengths[b]) go through the tower, `frame_batch` at a time, so
padding costs nothing; padding rows of the output are zeros. Frames are resized to the
tower's input side (bicubic, antialiased) and normalised with the tower's mean/std (CLIP's
unless the checkpoint says otherwise).

Per-frame feature (`feature`):
- 'cls': the class token after the final layer norm, before any projection head (HF CLIP's
  `pooler_output`; open_clip's pooled output with the projection removed). Towers without a
  class token (SigLIP) give their own pooled output.
- 'mean': the mean of the patch tokens after the final layer norm (CLIP family); other HF
  towers average all of `last_hidden_state`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from avsrctl.config import VideoEncoderConfig
from avsrctl.errors import ModelError
from avsrctl.models.weights import hub_error, params_fingerprint, path_fingerprint

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's training statistics
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class _VideoEncoder(nn.Module):
    """What every video encoder shares: the input checks, no_grad when frozen, eval mode when frozen.

    Subclasses set `frozen` and implement `_encode(video, lengths) -> (B, T, D)`.
    """

    frozen: bool

    def train(self, mode: bool = True):
        # A frozen encoder stays in eval mode whatever the parent module asks; a trainable one follows.
        return super().train(mode and not self.frozen)

    def forward(self, video: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if video.dim() != 5 or video.shape[2] != 3 or lengths.shape != video.shape[:1]:
            raise ModelError(
                f"vision encoder expects video (B, T, 3, H, W) and lengths (B,), got "
                f"{tuple(video.shape)} and {tuple(lengths.shape)}"
            )
        if video.dtype != torch.uint8:
            raise ModelError(f"vision encoder expects uint8 RGB frames, got {video.dtype}")
        if self.frozen:
            with torch.no_grad():
                return self._encode(video, lengths)
        return self._encode(video, lengths)

    def _encode(self, video: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class VisionEncoder(_VideoEncoder):
    """Per-frame features from an image tower ('hf' transformers vision model or 'open_clip' visual).

    forward(video (B, T, 3, H, W) uint8 RGB, lengths (B,)) -> (B, T, D_v); rows past a length are zeros.
    """

    def __init__(
        self,
        tower: nn.Module,
        *,
        kind: str,
        feature: str,
        image_size: int,
        mean: tuple[float, ...] = CLIP_MEAN,
        std: tuple[float, ...] = CLIP_STD,
        frame_batch: int = 256,
        identity: str,
        frozen: bool = True,
    ):
        super().__init__()
        if kind not in ("hf", "open_clip"):
            raise ModelError(f"unknown vision tower kind '{kind}' (expected 'hf' or 'open_clip')")
        if feature not in ("cls", "mean"):
            raise ModelError(f"unknown per-frame feature '{feature}' (expected 'cls' or 'mean')")
        if kind == "open_clip" and feature == "mean" and not hasattr(tower, "output_tokens"):
            raise ModelError(
                f"feature 'mean' needs patch tokens, which the open_clip tower {type(tower).__name__} does not give",
                hint="use model.video_encoder.feature=cls",
            )
        self.tower = tower
        self.kind = kind
        self.feature = feature
        self.image_size = image_size
        self.frame_batch = frame_batch
        self.identity = identity
        self.frozen = frozen
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)  # (1, 3, 1, 1)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)  # (1, 3, 1, 1)
        if frozen:
            self.tower.requires_grad_(False)
        self.train(False)
        with torch.no_grad():  # the width is whatever the tower gives for one black frame
            probe = torch.zeros(1, 3, image_size, image_size, device=self.mean.device)
            self.output_dim: int = int(self._features(self.normalise(probe.to(torch.uint8))).shape[-1])

    def normalise(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> float (N, 3, S, S): scaled to [0, 1], resized, normalised."""
        x = frames.to(self.mean.device, torch.float32) / 255.0  # (N, 3, H, W)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(
                x, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False, antialias=True
            )  # (N, 3, S, S)
            x = x.clamp(0.0, 1.0)  # bicubic overshoots at edges
        return (x - self.mean) / self.std

    def _features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) normalised -> (N, D)."""
        pixels = pixels.to(next(self.tower.parameters()).dtype)
        if self.kind == "open_clip":
            if not hasattr(self.tower, "output_tokens"):
                return self.tower(pixels).float()  # (N, D) pooled output of a non-ViT tower
            pooled, tokens = self.tower(pixels)  # (N, D), (N, P, D)
            return (pooled if self.feature == "cls" else tokens.mean(dim=1)).float()
        out = self.tower(pixel_values=pixels)
        hidden = out.last_hidden_state  # (N, P(+1), D)
        if hidden.dim() == 4:  # convolutional towers give a feature map
            hidden = hidden.flatten(2).transpose(1, 2)  # (N, C, h, w) -> (N, h*w, C)
        post_ln = _clip_post_layernorm(self.tower)
        if self.feature == "cls":
            pooled = getattr(out, "pooler_output", None)
            return (pooled.flatten(1) if pooled is not None else hidden[:, 0]).float()  # (N, D)
        if post_ln is not None:  # CLIP: last_hidden_state is before the final norm and starts with CLS
            return post_ln(hidden[:, 1:]).mean(dim=1).float()
        return hidden.mean(dim=1).float()

    def _encode(self, video: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, T = video.shape[:2]
        device = self.mean.device
        valid = torch.arange(T, device=video.device)[None, :] < lengths.to(video.device)[:, None]  # (B, T)
        frames = video[valid]  # (N, 3, H, W), the real frames in row-major order
        feats = [
            self._features(self.normalise(frames[i : i + self.frame_batch]))
            for i in range(0, frames.shape[0], self.frame_batch)
        ]  # each (<=frame_batch, D)
        out = torch.zeros(B, T, self.output_dim, device=device)  # (B, T, D), padding stays zero
        if feats:
            out = out.index_put((valid.to(device),), torch.cat(feats))  # (B, T, D); keeps the graph when trainable
        return out


def _norm(channels: int) -> nn.GroupNorm:
    """Group norm, 16 channels a group: no running statistics, so training and decoding compute the
    same function and checkpoints (which keep parameters only) hold the whole encoder."""
    return nn.GroupNorm(max(1, channels // 16), channels)


class _BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with group norm and a (projected) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = _norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = _norm(c_out)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), _norm(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


_SCALE_EPS = 1e-6  # keeps utterance_scale finite for a clip whose frames are all the same (centred to 0)


class LipEncoder(_VideoEncoder):
    """The lip-reading front-end of AV-HuBERT and Auto-AVSR, sized by the config, trained from scratch.

    grey frames (B, 1, T, S, S) --Conv3d 5x7x7 /(1,2,2)--> real frames only (N, C, S/2, S/2)
    --norm, ReLU, max-pool /2--> ResNet (4 stages of `layers` basic blocks, channels
    width/8, width/4, width/2, width; stride 1, 2, 2, 2) --global average--> (N, width) --> (B, T, width)
    [--`utterance_norm`: minus the clip's mean over its real frames-->] (B, T, width)
    [--`utterance_scale`: over the clip's root mean square-->] (B, T, width)
    --`temporal_layers` residual 1-D convs over time (kernel 5, GELU)--> (B, T, width)

    The 3-D stem sees 5 frames (200 ms) around each frame, so every feature carries the lip
    movement as well as the lip shape; each temporal conv widens that by 2 frames either side
    (with two, a feature sees 13 frames, about half a second), as the temporal back-ends of
    lip-reading models do. Frames are converted to grey (luma) and normalised with
    the usual lip-ROI statistics. Padding frames are zeroed before the stem, which is exactly the
    stem's own zero padding at the end of an utterance, and only real frames enter the 2-D trunk
    (group norms, per frame): a row's features never depend on how the batch was padded.

    With `utterance_norm`, each clip's per-frame features lose their mean over the clip's real
    frames before the temporal convs. What does not move in a clip (the speaker's face, skin,
    stubble, lighting, lip colour) is constant over its frames and leaves with the mean; the
    mouth's movement is what varies and stays. A face unlike any training face then shifts the
    features less, the way cepstral mean normalisation removes a channel from audio features.
    With `utterance_scale` as well, the centred features are divided by their root mean square over
    the clip's real frames and channels (one number per clip), so how far a mouth moves matters
    less than how it moves: speakers who barely open their lips and ones who open them wide give
    features of the same size, as mean and variance normalisation does for cepstra.
    """

    MEAN, STD = 0.421, 0.165  # grey lip-ROI statistics used by AV-HuBERT and Auto-AVSR

    def __init__(
        self,
        *,
        image_size: int,
        width: int,
        layers: int,
        temporal_layers: int = 2,
        utterance_norm: bool = False,
        utterance_scale: bool = False,
        identity: str,
        frozen: bool = False,
    ):
        super().__init__()
        if width % 8:
            raise ModelError(f"a 'resnet' video encoder needs a width divisible by 8 (got {width})")
        c = [width // 8, width // 4, width // 2, width]
        self.stem = nn.Conv3d(1, c[0], (5, 7, 7), (1, 2, 2), (2, 3, 3), bias=False)
        self.stem_norm = _norm(c[0])
        blocks, c_in = [], c[0]
        for stage, c_out in enumerate(c):
            for i in range(layers):
                blocks.append(_BasicBlock(c_in, c_out, 2 if stage and not i else 1))
                c_in = c_out
        self.trunk = nn.Sequential(*blocks)
        self.temporal = nn.ModuleList(nn.Conv1d(width, width, 5, padding=2) for _ in range(temporal_layers))
        if utterance_scale and not utterance_norm:
            raise ModelError("utterance_scale divides the centred features: it needs utterance_norm")
        self.utterance_norm = utterance_norm
        self.utterance_scale = utterance_scale
        self.image_size = image_size
        self.output_dim = width
        self.identity = identity
        self.frozen = frozen
        self.register_buffer("luma", torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1), persistent=False)
        if frozen:
            self.requires_grad_(False)

    def normalise(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> float grey (N, 1, S, S), resized and normalised."""
        x = (frames.to(self.luma.device, torch.float32) / 255.0 * self.luma).sum(1, keepdim=True)  # (N, 1, H, W)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(
                x, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False, antialias=True
            ).clamp(0.0, 1.0)
        return (x - self.MEAN) / self.STD

    def _encode(self, video: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, T = video.shape[:2]
        device = self.luma.device
        valid = torch.arange(T, device=device)[None, :] < lengths.to(device)[:, None]  # (B, T)
        S = self.image_size
        grey = torch.zeros(B, T, 1, S, S, device=device)  # (B, T, 1, S, S), padding frames stay 0
        if valid.any():
            grey[valid] = self.normalise(video.to(device)[valid])
        x = self.stem(grey.transpose(1, 2))  # (B, C, T, S/2, S/2)
        x = x.transpose(1, 2)[valid]  # (N, C, S/2, S/2), real frames only
        x = F.max_pool2d(F.relu(self.stem_norm(x)), 3, 2, 1)  # (N, C, S/4, S/4)
        x = self.trunk(x).mean((2, 3))  # (N, width)
        out = torch.zeros(B, T, self.output_dim, device=device)  # (B, T, width)
        out = out.index_put((valid,), x)
        keep = valid[..., None].to(out.dtype)  # (B, T, 1): padding is re-zeroed, like the convs' own padding
        if self.utterance_norm:
            mean = out.sum(1, keepdim=True) / keep.sum(1, keepdim=True).clamp_min(1)  # (B, 1, width)
            out = (out - mean) * keep
            if self.utterance_scale:
                count = keep.sum(1, keepdim=True).clamp_min(1) * self.output_dim  # (B, 1, 1)
                rms = ((out**2).sum((1, 2), keepdim=True) / count + _SCALE_EPS).sqrt()  # (B, 1, 1)
                out = out / rms
        for conv in self.temporal:
            out = out + F.gelu(conv(out.transpose(1, 2)).transpose(1, 2)) * keep
        return out


def _clip_post_layernorm(tower: nn.Module) -> nn.Module | None:
    """The final layer norm of a transformers CLIP vision tower (None for other towers)."""
    inner = getattr(tower, "vision_model", tower)
    emb = getattr(inner, "embeddings", None)
    if emb is not None and hasattr(emb, "class_embedding") and hasattr(inner, "post_layernorm"):
        return inner.post_layernorm
    return None


# ---------------------------------------------------------------------------- builders


def _random_tower(cfg: VideoEncoderConfig):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig(
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        hidden_size=cfg.width,
        intermediate_size=4 * cfg.width,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        hidden_act="quick_gelu",
    )
    tower = CLIPVisionModel(config)  # initialised from torch's global RNG: seed it for reproducible weights
    sizes = f"s{cfg.image_size}-p{cfg.patch_size}-w{cfg.width}-l{cfg.layers}-h{cfg.heads}"
    return tower, f"random:clip:{sizes}:{params_fingerprint(tower)}:{cfg.feature}"


def _hf_tower(name: str):
    from transformers import AutoImageProcessor, AutoModel

    try:
        # Never run model code shipped with a checkpoint (the vision config offers no switch for it).
        model = AutoModel.from_pretrained(name, dtype=torch.float32, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as e:
        raise hub_error("vision model", name, e) from None
    # Two-tower models (CLIPModel, SiglipModel) carry the image tower as `vision_model`.
    tower = model.vision_model if hasattr(model, "vision_model") and hasattr(model, "text_model") else model
    size = getattr(getattr(tower, "config", None), "image_size", None)
    mean, std = CLIP_MEAN, CLIP_STD
    try:  # the checkpoint's own statistics when its processor config is available locally
        proc = AutoImageProcessor.from_pretrained(name, trust_remote_code=False)
        mean, std = tuple(proc.image_mean), tuple(proc.image_std)
    except Exception:  # no processor config: keep CLIP's statistics (documented default)
        pass
    if Path(name).expanduser().is_dir():
        identity = f"hf:{Path(name).expanduser().resolve()}:{path_fingerprint(name)}"
    else:
        commit = getattr(model.config, "_commit_hash", None)
        identity = f"hf:{name}" + (f"@{commit}" if commit else "")
    return tower, size, mean, std, identity


def _open_clip_tower(name: str):
    import open_clip

    if name.startswith(("local-dir:", "hf-hub:")):
        arch, pretrained = name, None  # open_clip's own schemas carry config and weights
        local = name[len("local-dir:") :] if name.startswith("local-dir:") else None
    else:
        arch, _, tag = name.partition("/")
        pretrained = tag or None
        local = tag if tag and Path(tag).expanduser().is_file() else None  # 'ARCH//path/to/ckpt.pt'
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)  # open_clip logs failures itself; ours go into the ModelError
    try:
        model = open_clip.create_model(
            arch, pretrained=pretrained, device="cpu", require_pretrained=pretrained is not None, weights_only=True
        )  # a .pt checkpoint never unpickles code
    except Exception as e:  # open_clip raises RuntimeError/FileNotFoundError/hub errors alike
        raise hub_error("open_clip model", name, e) from None
    finally:
        logging.disable(previous)
    tower = model.visual
    if hasattr(tower, "output_tokens"):
        tower.output_tokens = True  # (pooled, patch tokens)
        if getattr(tower, "proj", None) is not None:
            tower.proj = None  # features before the image-text projection, like HF's pooler_output
    pre = open_clip.get_model_preprocess_cfg(model)
    size = pre.get("size", getattr(tower, "image_size", None))
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean, std = tuple(pre.get("mean", CLIP_MEAN)), tuple(pre.get("std", CLIP_STD))
    key = path_fingerprint(local) if local else None
    return tower, size, mean, std, f"open_clip:{name}" + (f":{key}" if key else "")


def _lip_encoder(cfg: VideoEncoderConfig) -> LipEncoder:
    enc = LipEncoder(
        image_size=cfg.image_size,
        width=cfg.width,
        layers=cfg.layers,
        temporal_layers=cfg.temporal_layers,
        utterance_norm=cfg.utterance_norm,
        utterance_scale=cfg.utterance_scale,
        identity="",
        frozen=cfg.frozen,
    )
    sizes = (
        f"s{cfg.image_size}-w{cfg.width}-l{cfg.layers}-t{cfg.temporal_layers}"
        + ("-un" if cfg.utterance_norm else "")
        + ("-us" if cfg.utterance_scale else "")
    )
    enc.identity = f"random:resnet:{sizes}:{params_fingerprint(enc)}"
    return enc


def build_video_encoder(cfg: VideoEncoderConfig) -> VisionEncoder | LipEncoder:
    """The vision encoder a config names: 'open_clip' ('ViT-B-32/openai', 'ARCH/<checkpoint file>',
    'local-dir:<folder>'), 'hf' (hub id or folder of a transformers vision model), or 'random'
    (a CLIP vision tower from the config sizes, weights from torch's global seed) or 'resnet'
    (the lip-reading front-end `LipEncoder`, from the config sizes and torch's global seed)."""
    if cfg.source == "resnet":
        return _lip_encoder(cfg)
    if cfg.source == "random":
        tower, identity = _random_tower(cfg)
        return VisionEncoder(
            tower,
            kind="hf",
            feature=cfg.feature,
            image_size=cfg.image_size,
            frame_batch=cfg.frame_batch,
            identity=identity,
            frozen=cfg.frozen,
        )
    if cfg.source == "hf":
        kind, (tower, size, mean, std, identity) = "hf", _hf_tower(str(cfg.name))
    elif cfg.source == "open_clip":
        kind, (tower, size, mean, std, identity) = "open_clip", _open_clip_tower(str(cfg.name))
    else:  # the config's Literal makes this unreachable
        raise ModelError(f"unknown video encoder source '{cfg.source}'")
    if size is not None and int(size) != cfg.image_size:
        raise ModelError(
            f"vision model '{cfg.name}' expects {size}x{size} frames but "
            f"model.video_encoder.image_size is {cfg.image_size}",
            hint=f"set model.video_encoder.image_size={size}",
        )
    return VisionEncoder(
        tower,
        kind=kind,
        feature=cfg.feature,
        image_size=cfg.image_size,
        mean=mean,
        std=std,
        frame_batch=cfg.frame_batch,
        identity=f"{identity}:{cfg.feature}",
        frozen=cfg.frozen,
    )
