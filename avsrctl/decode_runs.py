"""`avsrctl decode` as a library call: load a checkpoint, decode one clip or a manifest, score it.

A `DecodeRequest` carries every setting of the run; `run_decode_request` loads the checkpoint
and either decodes `single_file` (a `ClipDecode`: the text, nothing written) or decodes the
manifest clean and at each `snrs` level, writing hyp.wrd, results.jsonl and wer.json per condition
(`evaluate.run_decode`) into `output_dir` (default: CHECKPOINT/decode/<manifest>-<modality>,
beside a built-in model's name when it is one) and returning a `ManifestDecode`.
The loaded config is read, never changed: `batch_size` overrides its decode.batch_size here.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from avsrctl.errors import UsageError

if TYPE_CHECKING:
    from avsrctl.data.manifest import Manifest
    from avsrctl.decoding import DecodingResult
    from avsrctl.evaluate import DecodeOutput
    from avsrctl.metrics import ErrorReport


@dataclass(frozen=True)
class DecodeRequest:
    """What `avsrctl decode` decodes, with which checkpoint and settings (None: the checkpoint's own)."""

    checkpoint: Path
    tsv: Path | None = None  # None: the checkpoint config's data.root test split
    wrd: Path | None = None  # None: beside the .tsv
    single_file: Path | None = None  # one clip instead of a manifest (no tsv, no snrs)
    modality: str | None = None  # None: the modality it was trained for
    output_dir: Path | None = None  # None: CHECKPOINT/decode/<manifest>-<modality>
    beam_size: int | None = None
    max_new_tokens: int | None = None
    batch_size: int | None = None  # utterances generated together (None: the config's decode.batch_size)
    snrs: tuple[float, ...] = ()  # also decode with noise at these SNRs in dB
    noise: str = "babble"  # the noise of `snrs`: babble (other utterances) or white
    normalizer: str = "basic"
    min_lip_sync: float | None = None  # in-sync threshold of a fused model (None: its config's)
    device: str | None = None  # None: a GPU when there is one
    seed: int = 0


@dataclass(frozen=True)
class ClipDecode:
    """The result of a `single_file` request."""

    path: Path
    result: DecodingResult


@dataclass(frozen=True)
class ManifestDecode:
    """The scored conditions of a manifest request: `results[0]` is clean, then one per SNR level."""

    manifest: Manifest
    modality: str
    output_dir: Path
    results: list[tuple[DecodeOutput, ErrorReport]]
    min_lip_sync: float | None  # the threshold the lips were read with (None: no sync classifier)
    noise: str = "babble"  # the noise of the SNR levels

    def label(self, out: DecodeOutput) -> str:
        """A condition's name: 'clean' or 'babble -5 dB'."""
        return "clean" if out.snr_db is None else f"{self.noise} {out.snr_db:g} dB"


def run_decode_request(
    request: DecodeRequest,
    *,
    status: Callable[[str], AbstractContextManager] | None = None,
    progress: Callable[[], AbstractContextManager] | None = None,
) -> ClipDecode | ManifestDecode:
    """Load the checkpoint (inside `status("loading ...")`) and decode what `request` names; a manifest
    decodes inside `progress()`, a rich-like Progress given one task per condition."""
    from avsrctl.checkpoint import load_checkpoint, trained_modality
    from avsrctl.decoding import DecodingOptions, check_options_fit

    status = status or (lambda message: nullcontext())
    with status(f"loading {request.checkpoint}"):
        model, cfg, meta = load_checkpoint(request.checkpoint, device=request.device or "auto")
    options = DecodingOptions.from_config(
        cfg.decode,
        beam_size=request.beam_size,
        max_new_tokens=request.max_new_tokens,
        min_lip_sync=request.min_lip_sync,
    )
    check_options_fit(model, options)
    modality = request.modality or trained_modality(cfg, meta)
    if request.single_file is not None:
        return _decode_clip(model, cfg, request.single_file, modality, options)
    return _decode_manifest(model, cfg, request, modality, options, progress or (lambda: nullcontext()))


def _decode_clip(model, cfg, path: Path, modality: str, options) -> ClipDecode:
    import torch

    from avsrctl.data.dataset import load_clip

    batch = load_clip(path, modality, roi=cfg.data.roi, roi_size=cfg.data.roi_size)
    with torch.no_grad():
        (result,) = model.generate(batch.to(str(model.device)), modality, options)
    return ClipDecode(path, result)


def _decode_manifest(model, cfg, request: DecodeRequest, modality: str, options, progress) -> ManifestDecode:
    from avsrctl.data.manifest import read_manifest, split_paths
    from avsrctl.decoding import lip_sync_setting
    from avsrctl.evaluate import decode_outputs, run_decode
    from avsrctl.paths import refuse_overwrite
    from avsrctl.pretrained import outputs_beside

    tsv, wrd = request.tsv, request.wrd
    if tsv is None:
        if cfg.data.root is None:
            raise UsageError(
                "no --tsv given and the checkpoint's config has no data.root", hint="pass --tsv test.tsv --wrd test.wrd"
            )
        tsv, default_wrd = split_paths(cfg.data.root, cfg.data.test_split)
        wrd = wrd or default_wrd
    manifest = read_manifest(tsv, wrd)
    manifest.require(modality)
    out_dir = request.output_dir or outputs_beside(request.checkpoint) / "decode" / f"{Path(tsv).stem}-{modality}"
    media = [p for u in manifest for p in (u.video, u.audio)]
    refuse_overwrite(decode_outputs(out_dir, request.snrs), [manifest.tsv, manifest.wrd, *media], "--output-dir")
    out_dir.mkdir(parents=True, exist_ok=True)
    batch_size = request.batch_size or cfg.decode.batch_size

    lips = lip_sync_setting(model, modality, options)  # the threshold this decode reads the lips with
    with progress() as bar:
        results = run_decode(
            model,
            cfg,
            manifest,
            modality,
            out_dir,
            options,
            snrs=request.snrs,
            noise_kind=request.noise,
            normalizer=request.normalizer,
            seed=request.seed,
            device=str(model.device),
            batch_size=batch_size,
            progress=bar,
            extra_settings={"checkpoint": str(request.checkpoint), "batch_size": batch_size, **lips},
        )
    return ManifestDecode(manifest, modality, out_dir, results, lips.get("min_lip_sync"), request.noise)
