"""A tiny Llama with a real byte-level BPE tokenizer and a chatml template, made at test
time with transformers and tokenizers, for end-to-end tests of `tlm adapt`."""
import pathlib

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] "
          "+ '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
          "{% endif %}")

CORPUS = [
    "Crop rotation improves soil fertility and reduces pests.",
    "Wheat, maize and rice are the staple cereals of the world.",
    "Interest rates affect bond prices in the opposite direction.",
    "A diversified portfolio lowers the risk of large losses.",
    "Irrigation schedules depend on soil moisture and weather.",
    "Inflation erodes the purchasing power of savings over time.",
    "Nitrogen fixing legumes such as beans enrich the soil.",
    "Compound interest grows money faster than simple interest.",
    "What is the best time to plant tomatoes in a temperate climate?",
    "How do index funds differ from actively managed funds?",
] * 20

PROMPTS = [
    "How does crop rotation help the soil?",
    "What do interest rates do to bond prices?",
    "Why plant beans before wheat?",
    "Explain compound interest to a farmer.",
    "When should tomatoes be irrigated?",
    "Is a diversified portfolio safer?",
    "What are staple cereals?",
    "How does inflation affect savings?",
    "Which legumes fix nitrogen in soil?",
    "Should I buy index funds or pick stocks?",
]


def make_tokenizer_files(directory: pathlib.Path):
    """Trains the small byte-level BPE tokenizer on CORPUS + PROMPTS and saves it with the
    chatml template into `directory`; returns (tokenizers.Tokenizer, PreTrainedTokenizerFast)."""
    directory.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS + PROMPTS, trainer)
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                                  pad_token="<|endoftext|>")
    hf_tok.chat_template = CHATML
    hf_tok.save_pretrained(directory)
    return tok, hf_tok


def make_tiny_llama(directory: pathlib.Path, seed: int = 0, vocab_multiple: int = 1, arch: str = "llama",
                    extra_vocab: int = 0):
    """Saves model + tokenizer into `directory`; returns (model, tokenizer). The embedding has
    the tokenizer's vocabulary (320) rounded up to `vocab_multiple` rows (as models pad theirs so
    that tensor-parallel ranks split it evenly), plus `extra_vocab` rows no token uses (a
    vocabulary that does not split evenly). `arch` "qwen3": the same shape as a Qwen3
    (per-head q/k RMSNorm, head_dim 24 instead of hidden / heads = 16); "gemma3": a Gemma 3
    (sandwich norms, GeGLU, a sliding-window layer and a global one, head_dim 24)."""
    torch.manual_seed(seed)
    tok, hf_tok = make_tokenizer_files(directory)
    vocab = -(-tok.get_vocab_size() // vocab_multiple) * vocab_multiple + extra_vocab
    shape = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-5,
                 eos_token_id=tok.token_to_id("<|im_end|>"), pad_token_id=tok.token_to_id("<|endoftext|>"),
                 bos_token_id=None)
    if arch == "qwen3":
        model = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**shape, head_dim=24))
    elif arch == "gemma3":
        # A sliding window of 8 (chat prompts are longer) on 1 of the 2 layers, the other global.
        model = transformers.Gemma3ForCausalLM(transformers.Gemma3TextConfig(
            **shape, head_dim=24, sliding_window=8, query_pre_attn_scalar=24,
            layer_types=["sliding_attention", "full_attention"]))
    else:
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**shape))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.copy_(0.05 * torch.randn_like(p))
            elif "q_norm" in name or "k_norm" in name:  # not all ones, so that they matter
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif arch == "gemma3":  # Gemma's norms act as 1 + w: w away from 0, so that they matter
                p.copy_(0.1 * torch.randn_like(p))
    model.eval()
    model.save_pretrained(directory)
    return model, hf_tok


def chat_ids(tokenizer, prompt: str):
    ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                        tokenize=True)
    if hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)
