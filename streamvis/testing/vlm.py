"""Tiny random-weight chat VLMs saved like hub checkpoints, for tests: SmolVLM / Idefics3 and PaliGemma 2.

Tokenizers are trained in-process; image processors are the Pillow ones (no torchvision). Random weights prove
that the loading, prompting, generation and decoding paths work, never that the answers are right.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_CORPUS = ["a person is standing in a room near a door", "a car on the left of the road, a dog ahead",
           "User: Assistant: describe the scene briefly for a blind person", "caption en answer en what is this"]

IDEFICS3_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")


def _bpe_tokenizer(specials: list[str], **named: str) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(_CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, **named)


def build_idefics3(folder: str | Path, seed: int = 0, preset: str = "tiny") -> Path:
    """A SmolVLM-style Idefics3 model (SigLIP vision, Llama text) with its processor and chat template.

    `real` has SmolVLM-256M-Instruct's architecture (SigLIP base/16 at 512, pixel shuffle 4, SmolLM2-135M),
    for latency measurements; `tiny` is for tests.
    """
    import torch
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    specials = ["<|endoftext|>", "<|im_start|>", "<fake_token_around_image>", "<image>", "<end_of_utterance>",
                "<global-img>"] + [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    tokenizer = _bpe_tokenizer(specials, bos_token="<|im_start|>", eos_token="<end_of_utterance>",
                               pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    if preset == "real":
        image, patch, scale = 512, 16, 4
        vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
        text = dict(vocab_size=49280, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192)
    else:
        image, patch, scale = 32, 8, 2
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
        text = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                    num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512)
    image_processor = Idefics3ImageProcessorPil(size={"longest_edge": image * 2},
                                                max_image_size={"longest_edge": image}, do_image_splitting=False)
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer,
                                  image_seq_len=(image // patch) ** 2 // scale**2,
                                  chat_template=IDEFICS3_CHAT_TEMPLATE)
    config = Idefics3Config(
        vision_config=dict(image_size=image, patch_size=patch, **vision),
        text_config=dict(model_type="llama", bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **text),
        scale_factor=scale, image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config).eval()
    model.generation_config.min_new_tokens = 6  # a random model would otherwise stop at once
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return Path(folder)


def build_paligemma(folder: str | Path, seed: int = 0) -> Path:
    """A tiny PaliGemma 2-style model (SigLIP vision, Gemma 2 text) with its processor (plain prompts)."""
    import torch
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    tokenizer = _bpe_tokenizer(["<pad>", "<eos>", "<bos>", "<unk>", "<image>"], bos_token="<bos>",
                               eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")
    image_processor = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    image_processor.image_seq_length = 16  # type: ignore[attr-defined]  # (32 / 8)^2 patches
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    config = PaliGemmaConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8,
                           projection_dim=64),
        text_config=dict(model_type="gemma2", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                         max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), projection_dim=64)
    torch.manual_seed(seed)
    model = PaliGemmaForConditionalGeneration(config).eval()
    model.generation_config.min_new_tokens = 6
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return Path(folder)
