"""Random-weight Florence-2, SAM 2.1, EdgeTAM and SAM models saved like hub checkpoints, for tests and benchmarks.

`tiny` presets are small enough for CI; `real` presets have the published architectures (Florence-2-base,
SAM 2.1 hiera-tiny, SAM ViT-B) so latency can be measured without the weights. Each builder writes a folder
that `from_pretrained` loads through the same path a hub id takes. Random weights show that code paths and
shapes work, never that a model's answers are right.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Literal

Preset = Literal["tiny", "real"]

FLORENCE_TASK_TOKENS = ["<OD>", "<OCR>", "<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>",
                        "<OPEN_VOCABULARY_DETECTION>", "<CAPTION_TO_PHRASE_GROUNDING>", "<DENSE_REGION_CAPTION>",
                        "<OCR_WITH_REGION>", "<REGION_PROPOSAL>"]
FLORENCE_POST_PROCESSOR_CONFIG: dict[str, Any] = {
    "ocr": {"PATTERN": r"(.+?)<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>",
            "AREA_THRESHOLD": 0.0},
    "phrase_grounding": {"FILTER_BY_BLACK_LIST": True, "banned_grounding_tokens": ["the image"]},
    "pure_text": {}, "description_with_bboxes": {}, "description_with_polygons": {}, "polygons": {},
    "bboxes": {}, "description_with_bboxes_or_polygons": {},
}
_CORPUS = ["person dog cat car red blue green bus truck bicycle the a an in on of image photo text stop sign",
           "Locate the objects with category name in the image.", "What is the text in the image, with regions?",
           "Locate the phrases in the caption:", "Locate the objects in the image, with their descriptions."]


def build_florence2_tokenizer(folder: str | Path) -> Any:
    """A byte-level BPE tokenizer trained in-process, wrapped as Florence-2's BartTokenizer with its extra tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import BartTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(_CORPUS * 4, trainer)
    with tempfile.TemporaryDirectory() as tmp:
        bpe.model.save(tmp)
        tokenizer = BartTokenizer(vocab_file=f"{tmp}/vocab.json", merges_file=f"{tmp}/merges.txt",
                                  extra_special_tokens={"image_token": "<image>"})
    tokenizer.add_tokens([f"<loc_{i}>" for i in range(1000)] + FLORENCE_TASK_TOKENS + ["<poly>", "</poly>", "<sep>"])
    return tokenizer


def build_florence2(folder: str | Path, preset: Preset = "tiny", seed: int = 0, variant: str = "base") -> Path:
    """Florence-2 (model, tokenizer, image processor, processor) saved to `folder`; the real preset is
    Florence-2-`variant` (base or large)."""
    folder = Path(folder)
    model, processor = random_florence2(preset, seed, variant, tokenizer_folder=folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def random_florence2(preset: Preset = "tiny", seed: int = 0, variant: str = "base", device: str = "cpu",
                     tokenizer_folder: str | Path | None = None) -> tuple[Any, Any]:
    """A random-weight Florence-2 and its processor, made on `device` (fast for big models on a GPU)."""
    import torch
    from transformers import BartConfig, Florence2Config, Florence2ForConditionalGeneration, Florence2Processor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_florence2_tokenizer(tokenizer_folder or tmp)
    text: dict[str, Any]
    if preset == "tiny":
        image_size, d_model = 128, 64
        vision = dict(depths=[1, 1, 1, 1], embed_dim=[32, 32, 64, 64], num_heads=[2, 2, 2, 2],
                      num_groups=[2, 2, 2, 2], window_size=2, projection_dim=d_model)
        text = dict(vocab_size=len(tokenizer), d_model=d_model, encoder_layers=1, decoder_layers=1,
                    encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
                    max_position_embeddings=1024)
    elif variant == "large":  # Florence-2-large: DaViT (256-2048, depths 1-1-9-1) and a BART-large language model
        image_size, d_model = 768, 1024
        vision = dict(embed_dim=[256, 512, 1024, 2048], num_heads=[8, 16, 32, 64], num_groups=[8, 16, 32, 64],
                      projection_dim=d_model)
        text = dict(vocab_size=51290, d_model=d_model, encoder_layers=12, decoder_layers=12,
                    encoder_attention_heads=16, decoder_attention_heads=16, encoder_ffn_dim=4096,
                    decoder_ffn_dim=4096, max_position_embeddings=1024)
    else:  # Florence-2-base: DaViT (128-1024, depths 1-1-9-1) and a BART-base language model
        image_size, d_model = 768, 768
        vision = dict(projection_dim=d_model)
        text = dict(vocab_size=51290, d_model=d_model, encoder_layers=6, decoder_layers=6,
                    encoder_attention_heads=12, decoder_attention_heads=12, encoder_ffn_dim=3072,
                    decoder_ffn_dim=3072, max_position_embeddings=1024)
    text.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, decoder_start_token_id=tokenizer.eos_token_id,
                forced_bos_token_id=tokenizer.bos_token_id, forced_eos_token_id=tokenizer.eos_token_id)
    config = Florence2Config(text_config=BartConfig(**text).to_dict(), vision_config=vision,
                             image_token_id=tokenizer.image_token_id)
    torch.manual_seed(seed)
    with torch.device(device):
        model = Florence2ForConditionalGeneration(config).eval()
    # A random model would stop at once; make it write a few tokens so the parsing path is exercised.
    model.generation_config.min_new_tokens = 12 if preset == "tiny" else 20
    model.generation_config.max_new_tokens = 24 if preset == "tiny" else 20
    model.generation_config.num_beams = 1
    model.generation_config.do_sample = False
    grid = image_size // 32  # DaViT downsamples by 32; plus one extra token
    image_processor = CLIPImageProcessorPil(
        size={"height": image_size, "width": image_size}, crop_size={"height": image_size, "width": image_size},
        do_center_crop=False, image_seq_length=grid * grid + 1,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    processor = Florence2Processor(image_processor=image_processor, tokenizer=tokenizer,
                                   num_additional_image_tokens=1,
                                   post_processor_config=FLORENCE_POST_PROCESSOR_CONFIG)
    return model, processor


#: SAM 2.1's Hiera image encoders as published (sam2.1_hiera_*.yaml): embedding width, heads in the first stage,
#: blocks per stage, global-attention blocks, windows per stage, background size of the window position embedding
SAM2_VARIANTS: dict[str, tuple[int, int, list[int], list[int], list[int], list[int]]] = {
    "tiny": (96, 1, [1, 2, 7, 2], [5, 7, 9], [8, 4, 14, 7], [7, 7]),
    "small": (96, 1, [1, 2, 11, 2], [7, 10, 13], [8, 4, 14, 7], [7, 7]),
    "base-plus": (112, 2, [2, 3, 16, 3], [12, 16, 20], [8, 4, 14, 7], [14, 14]),
    "large": (144, 2, [2, 6, 36, 4], [23, 33, 43], [8, 4, 16, 8], [7, 7]),
}


def sam2_variant_config(variant: str) -> Any:
    """The `Sam2VideoConfig` of SAM 2.1 hiera-`variant` (tiny, small, base-plus, large) at 1024x1024."""
    from transformers import Sam2VideoConfig

    width, heads, blocks, global_blocks, windows, background = SAM2_VARIANTS[variant]
    widths = [width, 2 * width, 4 * width, 8 * width]
    backbone = dict(model_type="sam2_hiera_det_model", hidden_size=width, num_attention_heads=heads,
                    blocks_per_stage=blocks, embed_dim_per_stage=widths,
                    num_attention_heads_per_stage=[heads, 2 * heads, 4 * heads, 8 * heads],
                    window_size_per_stage=windows, global_attention_blocks=global_blocks,
                    window_positional_embedding_background_size=background)
    vision = dict(model_type="sam2_vision_model", backbone_config=backbone, backbone_channel_list=widths[::-1])
    return Sam2VideoConfig(vision_config=vision)


def _sam2_like_config(preset: Preset, kind: str, variant: str = "tiny") -> Any:
    from transformers import EdgeTamVideoConfig, Sam2VideoConfig

    config_cls = EdgeTamVideoConfig if kind == "edgetam" else Sam2VideoConfig
    if preset == "real":
        return sam2_variant_config(variant) if kind == "sam2" else config_cls()  # EdgeTAM: its published defaults
    size = 256
    vision = dict(
        model_type="sam2_vision_model",
        backbone_config=dict(model_type="sam2_hiera_det_model", image_size=[size, size], hidden_size=96,
                             blocks_per_stage=[1, 2, 2, 1], embed_dim_per_stage=[96, 112, 128, 144],
                             num_attention_heads_per_stage=[1, 1, 1, 1], window_size_per_stage=[8, 4, 14, 7],
                             global_attention_blocks=[4]),
        backbone_channel_list=[144, 128, 112, 96],
        backbone_feature_sizes=[[size // 4] * 2, [size // 8] * 2, [size // 16] * 2], fpn_hidden_size=128)
    common: dict[str, Any] = dict(
        vision_config=vision, prompt_encoder_config=dict(hidden_size=128, image_size=size),
        mask_decoder_config=dict(hidden_size=128, mlp_dim=256, num_attention_heads=2, iou_head_hidden_dim=128),
        image_size=size, memory_attention_hidden_size=128, memory_attention_num_layers=1,
        memory_attention_rope_feat_sizes=[size // 16, size // 16], memory_encoder_hidden_size=128,
        mask_downsampler_embed_dim=128, memory_fuser_embed_dim=128, memory_fuser_intermediate_dim=256,
        memory_fuser_num_layers=1)
    if kind == "edgetam":
        common.update(memory_attention_mlp_hidden_size=256, memory_attention_rope_k_sizes=[size // 32, size // 32],
                      perceiver_resampler_num_latents=64, perceiver_resampler_num_latents_2d=16)
    else:
        common.update(memory_attention_feed_forward_hidden_size=256)
    return config_cls(**common)


def build_sam2_video(folder: str | Path, preset: Preset = "tiny", kind: str = "sam2", seed: int = 0,
                     variant: str = "tiny") -> Path:
    """A SAM 2.1 (or EdgeTAM) video model saved to `folder`; the real preset is SAM 2.1 hiera-`variant`.

    The tiny preset biases the object-score head towards "present": random weights would otherwise declare
    objects absent at random, and the tests check that prompted objects are carried on every frame.
    """
    random_sam2_video(preset, kind, seed, variant).save_pretrained(folder)
    return Path(folder)


def random_sam2_video(preset: Preset = "tiny", kind: str = "sam2", seed: int = 0, variant: str = "tiny",
                      device: str = "cpu") -> Any:
    """A random-weight SAM 2.1 (or EdgeTAM) video model made on `device`, as `build_sam2_video` saves it."""
    import torch
    from transformers import EdgeTamVideoModel, Sam2VideoModel

    torch.manual_seed(seed)
    model_cls = EdgeTamVideoModel if kind == "edgetam" else Sam2VideoModel
    with torch.device(device):
        model = model_cls(_sam2_like_config(preset, kind, variant)).eval()
    if preset == "tiny":
        with torch.no_grad():
            model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(8.0)
    return model


def build_sam(folder: str | Path, preset: Preset = "tiny", seed: int = 0) -> Path:
    """A SAM (v1) model saved to `folder` (real preset: ViT-B)."""
    import torch
    from transformers import SamConfig, SamModel

    torch.manual_seed(seed)
    if preset == "real":
        config = SamConfig()
    else:
        config = SamConfig(vision_config=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                              image_size=256, output_channels=64, global_attn_indexes=[1],
                                              num_pos_feats=32, window_size=4, mlp_dim=128),
                           prompt_encoder_config=dict(hidden_size=64, image_size=256),
                           mask_decoder_config=dict(hidden_size=64, mlp_dim=128, num_attention_heads=2,
                                                    iou_head_hidden_dim=64))
    SamModel(config).eval().save_pretrained(folder)
    return Path(folder)


def build_sam3_tokenizer() -> Any:
    """A byte-level BPE tokenizer trained in-process, with CLIP's start and end tokens (SAM 3 reads 32 ids)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|startoftext|>", "<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(_CORPUS * 4, trainer)
    bpe.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", 0), ("<|endoftext|>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>")


def build_siglip2_tokenizer() -> Any:
    """SigLIP 2's own tokenizer class (Gemma's, lower-cased) over a tiny vocabulary: its special tokens, the 256
    byte-fallback tokens, and single letters, digits and the word marker (300 ids, no merges)."""
    from transformers import Siglip2Tokenizer

    vocab = {token: i for i, token in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"])}
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for char in "▁abcdefghijklmnopqrstuvwxyz0123456789.,?":
        if len(vocab) < 300:
            vocab[char] = len(vocab)
    return Siglip2Tokenizer(vocab=vocab, merges=[])


def build_sam3_video(folder: str | Path, seed: int = 0) -> Path:
    """A tiny SAM 3 video model (detector: ViT, CLIP text encoder, DETR; tracker: SAM 2's streaming memory) and
    its tokenizer saved to `folder`. The presence head is biased towards "present" and the thresholds lowered,
    so random weights find (stable) instances in a stream, which the tests need."""
    import torch
    from transformers import Sam3VideoConfig, Sam3VideoModel

    size, grid = 112, [[32, 32], [16, 16], [8, 8]]
    detector = dict(
        model_type="sam3",
        vision_config=dict(backbone_config=dict(model_type="sam3_vit_model", hidden_size=32, intermediate_size=64,
                                                num_hidden_layers=2, num_attention_heads=2, image_size=size,
                                                patch_size=14, window_size=4, global_attn_indexes=[1],
                                                pretrain_image_size=56),
                           fpn_hidden_size=128, backbone_feature_sizes=grid),
        text_config=dict(vocab_size=300, hidden_size=32, intermediate_size=64, projection_dim=32,
                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=32, bos_token_id=0,
                         eos_token_id=1, pad_token_id=1),
        geometry_encoder_config=dict(hidden_size=128, num_layers=1, num_attention_heads=2, intermediate_size=64),
        detr_encoder_config=dict(hidden_size=128, num_layers=1, num_attention_heads=2, intermediate_size=64),
        detr_decoder_config=dict(hidden_size=128, num_layers=1, num_queries=4, num_attention_heads=2,
                                 intermediate_size=64),
        mask_decoder_config=dict(hidden_size=128, num_attention_heads=2))
    tracker = dict(
        model_type="sam3_tracker_video", image_size=size,
        vision_config=dict(backbone_feature_sizes=grid, fpn_hidden_size=128),
        prompt_encoder_config=dict(hidden_size=128, image_size=size, patch_size=14),
        mask_decoder_config=dict(hidden_size=128, mlp_dim=256, num_attention_heads=2, iou_head_hidden_dim=128),
        memory_attention_hidden_size=128, memory_attention_num_layers=1, memory_attention_feed_forward_hidden_size=256,
        memory_attention_rope_feat_sizes=[8, 8], memory_encoder_hidden_size=128, mask_downsampler_embed_dim=128,
        memory_fuser_embed_dim=128, memory_fuser_intermediate_dim=256, memory_fuser_num_layers=1)
    config = Sam3VideoConfig(detector_config=detector, tracker_config=tracker, low_res_mask_size=32,
                             score_threshold_detection=0.05, new_det_thresh=0.05, hotstart_delay=2,
                             hotstart_unmatch_thresh=2, hotstart_dup_thresh=2)
    torch.manual_seed(seed)
    model = Sam3VideoModel(config).eval()
    with torch.no_grad():
        model.detector_model.detr_decoder.presence_head.layer3.bias.fill_(8.0)
        model.tracker_model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(8.0)
    folder = Path(folder)
    model.save_pretrained(folder)
    build_sam3_tokenizer().save_pretrained(folder)
    return folder


def build_clip(folder: str | Path, seed: int = 0, kind: Literal["clip", "siglip", "siglip2"] = "clip") -> Path:
    """A tiny random CLIP (or SigLIP, or SigLIP 2 with its variable-resolution image processor) with a CLIP-like
    tokenizer and a PIL image processor, saved to `folder` like a hub checkpoint: image and text towers into one
    16-value space (SigLIP: 32)."""
    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessorPil,
        CLIPModel,
        Siglip2Config,
        Siglip2ImageProcessorPil,
        Siglip2Model,
        SiglipConfig,
        SiglipModel,
    )

    text = dict(vocab_size=300, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=64, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                  patch_size=8)
    torch.manual_seed(seed)
    model: Any
    if kind == "clip":
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    elif kind == "siglip":
        model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
    else:
        vision = {**vision, "num_patches": 16}
        del vision["image_size"]
        model = Siglip2Model(Siglip2Config(text_config=text, vision_config=vision))
    folder = Path(folder)
    model.eval().save_pretrained(folder)
    if kind == "siglip2":
        build_siglip2_tokenizer().save_pretrained(folder)
        Siglip2ImageProcessorPil(patch_size=8, max_num_patches=16).save_pretrained(folder)
        return folder
    build_sam3_tokenizer().save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder
