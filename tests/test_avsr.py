from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from avsrctl.config import load_config
from avsrctl.data.batch import Batch
from avsrctl.decoding import DecodingOptions, teacher_forced_logprobs, teacher_forced_scores
from avsrctl.errors import CheckpointError, ModelError, UsageError
from avsrctl.models.avsr import IGNORE_INDEX, AVSRModel
from avsrctl.models.builder import build_model
from avsrctl.models.connector import AudioConnector, VideoConnector
from avsrctl.models.ctc import ctc_targets
from avsrctl.models.llm import build_llm

ALL = {"audio", "video", "both"}
K = {"audio": 3, "video": 2, "both": 2}  # tiny.yaml: audio_connector, video_connector, fusion compression


@pytest.fixture(scope="module")
def cfg():
    return load_config("tiny")


@pytest.fixture(scope="module")
def model(cfg):
    return build_model(cfg, ALL).eval()


def media_batch(lengths=(75, 40), texts=("hello world", "bye"), seed=0) -> Batch:
    """Raw audio (aligned to 640 samples per frame) and 32x32 uint8 video, zero padded."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    audio = torch.randn(len(lengths), 640 * T, generator=g) * 0.1
    video = torch.randint(0, 256, (len(lengths), T, 3, 32, 32), dtype=torch.uint8, generator=g)
    for b, n in enumerate(lengths):
        audio[b, 640 * n :] = 0
        video[b, n:] = 0
    return Batch(
        ids=[f"u{i}" for i in range(len(lengths))],
        texts=list(texts),
        lengths=torch.tensor(lengths),
        audio=audio,
        video=video,
    )


def feature_batch(lengths=(50, 30), texts=("hello world", "bye now"), seed=0) -> Batch:
    """Cached-encoder-style features (what the training feature cache fills): fast, no encoders."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    return Batch(
        ids=[f"f{i}" for i in range(len(lengths))],
        texts=list(texts),
        lengths=torch.tensor(lengths),
        audio_features=torch.randn(len(lengths), 2 * T, 64, generator=g),
        video_features=torch.randn(len(lengths), T, 64, generator=g),
    )


# --------------------------------------------------------------------------- shapes and layout


@pytest.mark.parametrize("modality", ["audio", "video", "both"])
def test_forward_from_raw_media_in_every_modality(model, modality):
    batch = media_batch()
    out = model(batch, modality)
    tokens, mask = model.modality_tokens(batch, modality)
    n = [math.ceil(75 / K[modality]), math.ceil(40 / K[modality])]
    assert tokens.shape == (2, n[0], 64) and tokens.dtype == torch.float32
    assert mask.sum(1).tolist() == n  # 75 frames: audio 25 tokens, video 38, both 38
    assert out.n_tokens == len(" hello world") + 1 + len(" bye") + 1  # transcript characters + EOS each
    assert out.logits.shape == (out.n_tokens, len(model.tokenizer))  # supervised positions only
    assert torch.isfinite(out.loss)
    # Same loss as the LLM's own full-vocabulary-at-every-position forward with labels.
    embeds, attn, labels = model.build_inputs(batch, modality, with_targets=True)
    with torch.no_grad():
        full = model.llm(inputs_embeds=embeds, attention_mask=attn, labels=labels, use_cache=False)
    torch.testing.assert_close(out.loss.detach(), full.loss, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("T", [1, 2, 3, 4, 74, 75, 76])
def test_token_counts_follow_the_alignment_rules(model, T):
    batch = feature_batch(lengths=(T,), texts=("a",))
    for modality in ("audio", "video", "both"):
        _, mask = model.modality_tokens(batch, modality)
        assert int(mask.sum()) == math.ceil(T / K[modality])


def test_labels_cover_only_transcript_and_eos(model):
    batch = feature_batch(texts=("Hello World", "bye"))
    tok = model.tokenizer
    for modality in ("audio", "video", "both"):
        embeds, attn, labels = model.build_inputs(batch, modality)
        assert embeds.shape[:2] == labels.shape == attn.shape
        for b, text in enumerate(batch.texts):
            target = tok(" " + text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            supervised = labels[b][labels[b] != IGNORE_INDEX].tolist()
            assert supervised == target  # case kept as given; EOS supervised so the model learns to stop
            n = int(attn[b].sum())
            assert attn[b, :n].all() and not attn[b, n:].any()  # right padding for training
            assert labels[b, n - len(target) : n].tolist() == target  # the transcript ends the row


def test_an_unsure_word_is_read_but_not_taught(model):
    # `~word` (data/manifest.py): the LLM reads the word's tokens, but they carry no loss
    plain = feature_batch(texts=("hello world now", "bye"))
    marked = feature_batch(texts=("hello ~world now", "~bye"))
    e_plain, a_plain, l_plain = model.build_inputs(plain, "video")
    e_marked, a_marked, l_marked = model.build_inputs(marked, "video")
    assert torch.equal(e_plain, e_marked) and torch.equal(a_plain, a_marked)
    tok = model.tokenizer
    changed = l_plain != l_marked
    assert (l_marked[changed] == IGNORE_INDEX).all()
    # the untaught tokens are the word's own (a lone space token before it is still taught)
    assert [tok.decode(l_plain[b][changed[b]].tolist()).strip() for b in range(2)] == ["world", "bye"]
    untaught = changed.sum(1).tolist()
    taught = l_marked[1][l_marked[1] != IGNORE_INDEX].tolist()
    assert taught[-1] == tok.eos_token_id and tok.decode(taught[:-1]).strip() == ""  # EOS is always taught
    with torch.no_grad():
        assert model(marked, "video").n_tokens == model(plain, "video").n_tokens - sum(untaught)


def test_sequence_layout_per_modality(model):
    batch = feature_batch(lengths=(10,), texts=("hi",))
    emb = model.llm.get_input_embeddings()
    m = model.marker_embeddings.detach()
    prompt = len(model.prompt_ids)
    for modality, opens, closes in (("audio", [0], [1]), ("video", [2], [3]), ("both", [0, 2], [3, 1])):
        n = math.ceil(10 / K[modality])
        embeds, _, labels = model.build_inputs(batch, modality)
        row = embeds[0]
        assert torch.equal(row[0], emb.weight[model.tokenizer.bos_token_id])  # [BOS]
        assert torch.equal(row[1 : 1 + len(opens)], m[opens])  # <audio> / <video> / <audio><video>
        tokens_end = 1 + len(opens) + n
        assert torch.equal(row[tokens_end : tokens_end + len(closes)], m[closes])  # nested closing markers
        assert row.shape[0] == tokens_end + len(closes) + prompt + len(" hi") + 1


def test_padded_rows_do_not_change_a_rows_inputs(model):
    both = feature_batch(lengths=(50, 30))
    alone = both.select([1])
    for modality in ("audio", "video", "both"):
        e2, a2, _ = model.build_inputs(both, modality)
        e1, _, _ = model.build_inputs(alone, modality)
        n = int(a2[1].sum())
        torch.testing.assert_close(e2[1, :n], e1[0])


# --------------------------------------------------------------------------- what trains


def test_only_connectors_fusion_markers_and_lora_train(model):
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    allowed = ("audio_connector.", "video_connector.", "fusion.", "marker_embeddings")
    assert all(n.startswith(allowed) or (n.startswith("llm.") and "lora_" in n) for n in trainable)
    for group in allowed + ("lora_",):
        assert any(group in n for n in trainable), group
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert any(n.startswith("audio_encoder.") for n in frozen) and any(n.startswith("video_encoder.") for n in frozen)
    assert not any(p.requires_grad for n, p in model.llm.named_parameters() if "lora_" not in n)


def test_frozen_encoders_stay_in_eval_mode_while_training(cfg):
    m = build_model(cfg, ALL)
    m.train()
    assert m.training and m.audio_connector.training and m.fusion.training
    assert not m.audio_encoder.training and not m.video_encoder.training


def test_cached_features_give_the_same_loss_as_raw_media(model):
    batch = media_batch(lengths=(20, 13))
    cached = Batch(
        **{
            **batch.__dict__,
            "audio": None,
            "video": None,
            "audio_features": model.encode_audio(batch),
            "video_features": model.encode_video(batch),
        }
    )
    with torch.no_grad():
        for modality in ("audio", "video", "both"):
            torch.testing.assert_close(model(batch, modality).loss, model(cached, modality).loss)


@pytest.mark.parametrize("modality", ["audio", "video", "both"])
def test_a_few_adamw_steps_drive_the_loss_down(cfg, modality):
    m = build_model(cfg, ALL).train()
    batch = feature_batch()
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    losses = []
    for _ in range(10):
        loss = m(batch, modality).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


# --------------------------------------------------------------------------- generation


@pytest.fixture(scope="module")
def overfit(cfg):
    """The tiny model trained on two short sentences (60 AdamW steps: loss ~0.1 per token)."""
    m = build_model(cfg, ALL).train()
    batch = feature_batch()
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    for _ in range(60):
        loss = m(batch, "both").loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval(), batch


@pytest.mark.slow
def test_greedy_and_beam_search_reproduce_the_overfitted_sentences(overfit):
    m, batch = overfit
    greedy = m.generate(batch, "both", DecodingOptions(beam_size=1, max_new_tokens=24))
    assert [r.text for r in greedy] == batch.texts
    for r, text in zip(greedy, batch.texts):
        assert r.stopped_at_eos and m.tokenizer.eos_token_id not in r.token_ids
        assert m.tokenizer.decode(list(r.token_ids)).strip() == text
        assert r.modality == "both" and r.score <= 0.0
    beam = m.generate(batch, "both", DecodingOptions(beam_size=3, max_new_tokens=24))
    assert [r.text for r in beam] == batch.texts
    assert [r.id for r in beam] == batch.ids
    for g, b in zip(greedy, beam):  # the same tokens: the beam's teacher-forced pass measures what greedy read
        assert len(b.token_logprobs) == len(b.token_ids) and b.token_logprobs == pytest.approx(
            g.token_logprobs, abs=1e-4
        )


@pytest.mark.slow
def test_batched_generation_equals_one_at_a_time_after_training(overfit):
    m, batch = overfit
    _check_batched_equals_single(m, batch, "both")


def _check_batched_equals_single(m, batch, modality, n=12):
    for options in (DecodingOptions(beam_size=1, max_new_tokens=n), DecodingOptions(beam_size=3, max_new_tokens=n)):
        together = m.generate(batch, modality, options)
        alone = [m.generate(batch.select([i]), modality, options)[0] for i in range(len(batch))]
        assert [r.token_ids for r in together] == [r.token_ids for r in alone]
        for a, b in zip(together, alone):
            assert a.score == pytest.approx(b.score, abs=1e-4)
            assert a.n_input_tokens == b.n_input_tokens


@pytest.mark.parametrize("modality", ["audio", "both"])
def test_batched_generation_equals_one_at_a_time(model, modality):
    # rows of different lengths: left padding must not change any row's tokens or score
    _check_batched_equals_single(model, feature_batch(lengths=(50, 23)), modality, n=6)


def _check_greedy_scores_equal_a_teacher_forced_pass(m, batch, modality, n):
    # Greedy scores come from the search's own logits; they must be the measure of `teacher_forced_scores` (raw
    # model distribution, tokens up to and including the first EOS) over the same tokens.
    res = m.generate(batch, modality, DecodingOptions(beam_size=1, max_new_tokens=n))
    rows = [list(r.token_ids) + ([m.eos_id] if r.stopped_at_eos else []) for r in res]
    width = max(len(r) for r in rows)
    new = torch.tensor([r + [m.pad_id] * (width - len(r)) for r in rows])  # (B, n_new) as generate pads
    embeds, attn, _ = m.build_inputs(batch, modality, with_targets=False)
    with torch.no_grad():
        forced = teacher_forced_scores(m, embeds, attn, new)
        per_token = teacher_forced_logprobs(m, embeds, attn, new)
    for b, (r, f) in enumerate(zip(res, forced)):
        assert r.score < 0.0
        assert abs(r.score - f) < 1e-4
        # each token's own log-probability, EOS left out of token_logprobs but in the score
        assert len(r.token_logprobs) == len(r.token_ids)
        assert r.token_logprobs == pytest.approx(per_token[b, : len(r.token_ids)].tolist(), abs=1e-4)
        assert all(lp <= 0.0 for lp in r.token_logprobs)
    return res


@pytest.mark.parametrize("modality", ["audio", "both"])
def test_greedy_scores_equal_a_teacher_forced_pass(model, modality):
    _check_greedy_scores_equal_a_teacher_forced_pass(model, feature_batch(lengths=(50, 23)), modality, n=6)


@pytest.mark.slow
def test_greedy_scores_equal_a_teacher_forced_pass_when_rows_stop_at_eos(overfit):
    m, batch = overfit
    res = _check_greedy_scores_equal_a_teacher_forced_pass(m, batch, "both", n=24)
    # the case checked: rows that stop at EOS after different lengths, the shorter one padded after it
    assert all(r.stopped_at_eos for r in res) and len({len(r.token_ids) for r in res}) == 2


def test_max_new_tokens_bounds_the_output(model):
    res = model.generate(feature_batch(), "audio", DecodingOptions(max_new_tokens=3))
    assert all(len(r.token_ids) <= 3 for r in res)
    assert all(r.stopped_at_eos or len(r.token_ids) == 3 for r in res)
    assert model.generate(feature_batch().select([]), "audio") == []


def test_generate_keeps_the_training_mode(cfg):
    m = build_model(cfg, {"audio"}).train()
    m.generate(feature_batch(), "audio", DecodingOptions(max_new_tokens=2))
    assert m.training and m.audio_connector.training


def test_decoding_options_are_checked():
    with pytest.raises(UsageError, match="beam_size"):
        DecodingOptions(beam_size=0)
    with pytest.raises(UsageError, match="max_new_tokens"):
        DecodingOptions(max_new_tokens="8")
    with pytest.raises(UsageError, match="length_penalty"):
        DecodingOptions(length_penalty=float("nan"))
    with pytest.raises(Exception):
        DecodingOptions().beam_size = 2  # frozen


# --------------------------------------------------------------------------- weights and building


def test_trainable_state_dict_round_trip(cfg):
    a = build_model(cfg, ALL).eval()
    with torch.no_grad():
        for p in a.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    sd = a.trainable_state_dict()
    assert set(sd) == {n for n, p in a.named_parameters() if p.requires_grad}
    assert not any(k.startswith(("audio_encoder.", "video_encoder.")) for k in sd)
    b = build_model(cfg, ALL).eval()
    batch = feature_batch()
    with torch.no_grad():
        assert not torch.equal(a(batch, "both").loss, b(batch, "both").loss)
        b.load_trainable_state_dict(sd)
        for modality in ("audio", "video", "both"):
            assert torch.equal(a(batch, modality).logits, b(batch, modality).logits)


def test_load_trainable_state_dict_names_the_problem(cfg, model):
    sd = dict(model.trainable_state_dict())
    missing = dict(sd)
    del missing["fusion.gate.2.bias"]
    with pytest.raises(CheckpointError, match="missing .*fusion.gate.2.bias"):
        model.load_trainable_state_dict(missing)
    with pytest.raises(CheckpointError, match="unexpected .*llm.lm_head.weight"):
        model.load_trainable_state_dict({**sd, "llm.lm_head.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="shape mismatches .*marker_embeddings"):
        model.load_trainable_state_dict({**sd, "marker_embeddings": torch.zeros(4, 3)})
    model.load_trainable_state_dict(missing, strict=False)  # partial loads only when asked


def test_two_builds_are_identical_and_frozen_weights_do_not_depend_on_modalities(cfg, model):
    again = build_model(cfg, ALL)
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), again.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2), n1
    audio_only = build_model(cfg, {"audio"})
    assert audio_only.modalities == ("audio",) and audio_only.video_encoder is None and audio_only.fusion is None
    full = model.state_dict()
    for name, p in audio_only.state_dict().items():  # frozen random weights are rebuilt, not saved
        assert torch.equal(p, full[name]), name


def test_builder_defaults_to_the_config_modality(cfg):
    m = build_model(cfg.model_copy(update={"model": cfg.model.model_copy(update={"modality": "video"})}))
    assert m.modalities == ("video",)
    assert build_model(cfg).modalities == ("audio", "video", "both")  # tiny.yaml says both
    with pytest.raises(UsageError, match="unknown modalities"):
        build_model(cfg, {"lips"})


def test_a_modality_the_model_cannot_serve_is_a_usage_error(cfg):
    m = build_model(cfg, {"audio"})
    with pytest.raises(UsageError, match="serves: audio"):
        m.generate(feature_batch(), "video")
    with pytest.raises(UsageError, match="no video encoder"):
        m.encode_video(media_batch())


class StandInAudio(nn.Module):
    """Same contract as WhisperAudioEncoder: (B, S), (B,) -> (B, 2T, D_a)."""

    output_dim = 8
    identity = "stand-in"

    def forward(self, audio, lengths):
        frames = audio.view(audio.shape[0], -1, 320)  # (B, 2T, 320)
        return frames[..., : self.output_dim]


def test_parts_are_checked_when_assembled():
    torch.manual_seed(0)
    llm, tok = build_llm(load_config("tiny").model.llm)
    ok = AVSRModel({"audio": StandInAudio()}, {"audio": AudioConnector(8, 16, 64, 3)}, None, llm, tok, prompt="x")
    assert ok.modalities == ("audio",)
    out = ok(media_batch(), "audio")  # the stand-in encoder runs on raw audio
    assert torch.isfinite(out.loss)
    with pytest.raises(ModelError, match="connector expects 9"):
        AVSRModel({"audio": StandInAudio()}, {"audio": AudioConnector(9, 16, 64, 3)}, None, llm, tok, prompt="x")
    with pytest.raises(ModelError, match="LLM expects 64"):
        AVSRModel({"audio": StandInAudio()}, {"audio": AudioConnector(8, 16, 32, 3)}, None, llm, tok, prompt="x")
    with pytest.raises(ModelError, match="must name the same"):
        AVSRModel({"audio": StandInAudio()}, {"video": VideoConnector(8, 16, 64, 2)}, None, llm, tok, prompt="x")


# --------------------------------------------------------------------------- auxiliary CTC


@pytest.fixture(scope="module")
def ctc_cfg(cfg):
    losses = cfg.model.losses.model_copy(update={"ctc": 0.5})
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"losses": losses})})


def test_ctc_heads_exist_only_when_weighted(cfg, ctc_cfg):
    assert len(build_model(cfg, ALL).ctc_heads) == 0
    m = build_model(ctc_cfg, ALL)
    assert sorted(m.ctc_heads) == ["audio", "video"]
    assert sorted(build_model(ctc_cfg, {"video"}).ctc_heads) == ["video"]
    assert {n for n in m.trainable_state_dict() if n.startswith("ctc_heads.")} == {
        "ctc_heads.audio.weight",
        "ctc_heads.audio.bias",
        "ctc_heads.video.weight",
        "ctc_heads.video.bias",
    }


@pytest.mark.parametrize("modality", ["video", "both"])
def test_ctc_adds_to_the_training_objective_only(ctc_cfg, modality):
    m = build_model(ctc_cfg, ALL).train()
    batch = media_batch(texts=("Hello, World!", "bye"))
    out = m(batch, modality)
    assert out.ctc is not None and math.isfinite(out.ctc.item()) and out.ctc.item() > 0
    torch.testing.assert_close(out.objective, out.loss + 0.5 * out.ctc)
    m.eval()
    with torch.no_grad():
        evaluated = m(batch, modality)
    assert evaluated.ctc is None and evaluated.objective is None


def test_ctc_targets_are_lower_case_characters_without_punctuation(ctc_cfg):
    m = build_model(ctc_cfg, {"video"}).train()
    streams = m.streams(media_batch(), "video")
    lengths = media_batch().lengths
    same = [m.ctc_heads.loss(streams, list(t), lengths) for t in (("hello world", "bye"), ("HELLO, world!", "Bye."))]
    torch.testing.assert_close(same[0], same[1])
    assert ctc_targets(["HELLO, world!"]) == ctc_targets(["hello world"])
    other = m.ctc_heads.loss(streams, ["hello there", "bye"], lengths)
    assert not torch.allclose(other, same[0])


def test_ctc_gives_the_video_encoder_a_gradient_of_its_own(ctc_cfg):
    lips = ctc_cfg.model.video_encoder.model_copy(update=dict(source="resnet", width=32, layers=1, frozen=False))
    cfg = ctc_cfg.model_copy(update={"model": ctc_cfg.model.model_copy(update={"video_encoder": lips})})
    m = build_model(cfg, {"video"}).train()
    out = m(media_batch(), "video")
    out.ctc.backward()
    grads = [p.grad for p in m.video_encoder.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    assert m.ctc_heads["video"].weight.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in m.named_parameters() if "lora" in n)  # CTC does not touch the LLM


def test_ctc_weight_cannot_be_negative():
    with pytest.raises(Exception, match="ctc_weight"):
        load_config("tiny", ["model.ctc_weight=-1"])


def test_the_ctc_objective_alone_never_runs_the_llm(ctc_cfg):
    m = build_model(ctc_cfg, ALL).train()
    batch = media_batch(texts=("hello world", "bye"))
    calls = []
    hook = m.llm.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        out = m(batch, "both", "ctc")
    finally:
        hook.remove()
    assert not calls and out.n_tokens == len("hello world") + len("bye")
    torch.testing.assert_close(out.loss, out.ctc)
    out.loss.backward()
    assert all(p.grad is None for n, p in m.named_parameters() if "lora" in n or n == "marker_embeddings")
    assert m.ctc_heads["audio"].weight.grad is not None and m.ctc_heads["video"].weight.grad is not None
    with pytest.raises(ModelError, match="objective"):
        m(batch, "video", "ctc-only")
    with pytest.raises(UsageError, match="losses.ctc"):
        build_model(load_config("tiny"), {"video"})(batch, "video", "ctc")


def test_ctc_transcribe_collapses_repeats_and_blanks(ctc_cfg, monkeypatch):
    m = build_model(ctc_cfg, {"video"})
    head = m.ctc_heads["video"]
    script = [0, 11, 11, 0, 11, 1, 1, 0, 3, 0]  # blank i i blank i ' ' ' ' blank a blank -> "ii a"
    with torch.no_grad():  # a head that ignores its input and spells out `script`, one frame at a time
        head.weight.zero_()
        head.bias.zero_()
    logits = torch.full((1, len(script), head.out_features), -10.0)
    logits[0, torch.arange(len(script)), torch.tensor(script)] = 10.0
    monkeypatch.setattr(
        m.ctc_heads,
        "log_probs",
        lambda name, x: torch.log_softmax(logits[:, : x.shape[1]], -1).expand(x.shape[0], -1, -1),
    )
    texts = m.ctc_transcribe(media_batch(lengths=(10, 4), texts=("x", "y")), "video")
    assert texts == ["ii a", "i"]


def test_encoders_compute_in_float32_under_the_trainers_autocast(model):
    """Live features under bf16 autocast must equal what the feature cache stores (computed
    outside autocast) and what decoding sees (no autocast)."""
    batch = media_batch(lengths=(6, 4))
    plain = {s: getattr(model, f"encode_{s}")(batch) for s in ("audio", "video")}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = {s: getattr(model, f"encode_{s}")(batch) for s in ("audio", "video")}
    for s in ("audio", "video"):
        assert mixed[s].dtype == torch.float32
        torch.testing.assert_close(mixed[s], plain[s], rtol=0, atol=0)


def test_hub_generation_defaults_do_not_change_decoding(cfg):
    """A hub model's generation_config.json (repetition penalty, suppressed tokens) must not reach
    generate() or the scores: decoding is what DecodingOptions says."""
    model = build_model(cfg, {"audio"}).eval()
    batch = media_batch(lengths=(6, 4))
    options = DecodingOptions(max_new_tokens=6)
    clean = model.generate(batch, "audio", options)
    first = clean[0].token_ids[0] if clean[0].token_ids else model.eos_id
    model.llm.generation_config.repetition_penalty = 50.0
    model.llm.generation_config.suppress_tokens = [first]
    model.llm.generation_config.no_repeat_ngram_size = 1
    for beam in (1, 2):
        opts = DecodingOptions(max_new_tokens=6, beam_size=beam)
        model.llm.generation_config.repetition_penalty = 50.0
        hub = model.generate(batch, "audio", opts)
        saved = model.llm.generation_config
        model.llm.generation_config = type(saved)()
        want = model.generate(batch, "audio", opts)
        model.llm.generation_config = saved
        assert [r.token_ids for r in hub] == [r.token_ids for r in want]
        assert [r.score for r in hub] == pytest.approx([r.score for r in want], abs=1e-5)
    assert model.llm.generation_config.repetition_penalty == 50.0  # the model's own config is left as it was
