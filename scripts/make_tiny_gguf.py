"""Convert the tiny chat model into its GGUF twin for llama.cpp.

Reads ``src/modelfleet/assets/tiny-chat/`` (a Hugging Face Llama directory: ``config.json``,
``model.safetensors``, ``tokenizer.json``, ``tokenizer_config.json``) and writes
``src/modelfleet/assets/tiny-chat-gguf/tiny-chat.gguf`` with the ``gguf`` package: the llama
hyper-parameters, every tensor under its llama.cpp name (float32, as trained), and the
tokenizer as a GPT-2 style byte-level BPE with its merges, special-token types, bos/eos/pad ids
and the Jinja chat template. Nothing is downloaded; torch and transformers are not needed.

The output is byte-for-byte deterministic: same input directory, same file.

    python scripts/make_tiny_gguf.py            # convert
    python scripts/make_tiny_gguf.py --verify   # convert, then compare with the HF model

``--verify`` (needs llama-cpp-python and transformers) loads the file with ``llama_cpp.Llama``,
asks both models "What is 2 plus 3?" greedily, prints both answers and fails when they differ,
and checks that ``embedding=True`` gives one vector of the hidden size per input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from safetensors.numpy import load_file

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCE = REPO_ROOT / "src" / "modelfleet" / "assets" / "tiny-chat"
OUT_DIR = REPO_ROOT / "src" / "modelfleet" / "assets" / "tiny-chat-gguf"
OUT_FILE = OUT_DIR / "tiny-chat.gguf"
QUESTION: list[Any] = [{"role": "user", "content": "What is 2 plus 3?"}]

# HF Llama names → llama.cpp names; "{i}" is the block number.
LAYER_TENSORS = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
GLOBAL_TENSORS = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",  # absent when tied: llama.cpp then reuses token_embd
}


def permute_rope(weights: np.ndarray, n_head: int) -> np.ndarray:
    """HF's q/k rows (rotate-half RoPE layout) → llama.cpp's interleaved pairs.

    The same reordering as llama.cpp's own convert_hf_to_gguf.py; without it attention
    would rotate the wrong dimensions and the model would babble.
    """
    rows = weights.shape[0]
    return (weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def tensors(source: Path, config: dict[str, Any]) -> list[tuple[str, np.ndarray]]:
    """Every weight under its GGUF name, in a fixed order (sorted by HF name)."""
    n_head, n_kv = config["num_attention_heads"], config["num_key_value_heads"]
    out: list[tuple[str, np.ndarray]] = []
    for name, array in sorted(load_file(source / "model.safetensors").items()):
        array = np.ascontiguousarray(array.astype(np.float32))
        if name in GLOBAL_TENSORS:
            out.append((GLOBAL_TENSORS[name], array))
            continue
        prefix, _, rest = name.partition(".layers.")
        block, _, suffix = rest.partition(".")
        if prefix != "model" or suffix not in LAYER_TENSORS:
            raise SystemExit(f"unexpected tensor {name!r}: not a plain Llama checkpoint")
        if suffix == "self_attn.q_proj.weight":
            array = permute_rope(array, n_head)
        elif suffix == "self_attn.k_proj.weight":
            array = permute_rope(array, n_kv)
        out.append((f"blk.{int(block)}.{LAYER_TENSORS[suffix]}", array))
    return out


def vocabulary(source: Path) -> tuple[list[str], list[int], list[str], dict[str, int]]:
    """Tokens by id, their GGUF types, the merges as "a b", and the special ids by role."""
    tok = json.loads((source / "tokenizer.json").read_text())
    model = tok["model"]
    if model.get("type") != "BPE" or tok["pre_tokenizer"].get("type") != "ByteLevel":
        raise SystemExit("only byte-level BPE tokenizers are supported")
    by_id = {i: t for t, i in model["vocab"].items()}
    for added in tok["added_tokens"]:
        by_id[added["id"]] = added["content"]
    if sorted(by_id) != list(range(len(by_id))):
        raise SystemExit("token ids are not contiguous")
    tokens = [by_id[i] for i in range(len(by_id))]
    special = {a["content"] for a in tok["added_tokens"] if a.get("special")}
    # CONTROL tokens are parsed from text only when asked and never printed in output,
    # which is how the HF tokenizer treats its special tokens too.
    types = [gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    tok_config = json.loads((source / "tokenizer_config.json").read_text())
    ids = {role: model["vocab"].get(tok_config[f"{role}_token"], -1)
           for role in ("bos", "eos", "pad")}
    return tokens, [int(t) for t in types], merges, ids


def convert(source: Path, out: Path) -> None:
    config = json.loads((source / "config.json").read_text())
    tok_config = json.loads((source / "tokenizer_config.json").read_text())
    if config.get("model_type") != "llama":
        raise SystemExit(f"{source} is not a Llama model")
    weights = tensors(source, config)
    tokens, types, merges, ids = vocabulary(source)
    n_vocab = dict(weights)["token_embd.weight"].shape[0]
    if len(tokens) != n_vocab:
        raise SystemExit(f"{len(tokens)} tokens but {n_vocab} embedding rows")
    hidden, n_head = config["hidden_size"], config["num_attention_heads"]
    rope = config.get("rope_parameters") or {}
    out.parent.mkdir(parents=True, exist_ok=True)

    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name("tiny-chat")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(hidden)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_rope_dimension_count(config.get("head_dim") or hidden // n_head)
    writer.add_rope_freq_base(float(rope.get("rope_theta", config.get("rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(n_vocab)

    writer.add_tokenizer_model("gpt2")
    # "gpt-2" is llama.cpp's name for the GPT-2 split regex, the one HF's ByteLevel
    # pre-tokenizer applies (use_regex=True, no prefix space).
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(ids["bos"])
    writer.add_eos_token_id(ids["eos"])
    writer.add_pad_token_id(ids["pad"])
    # Raw completion prompts get <|bos|> as in training; chat prompts carry it from the
    # template and both llama.cpp front ends avoid adding a second one.
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(tok_config["chat_template"])

    for name, array in weights:
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def hf_answer(source: Path, max_tokens: int) -> str:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(source, local_files_only=True).eval()
    prompt = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    enc = tokenizer(str(prompt), add_special_tokens=False, return_tensors="pt")
    output = model.generate(**enc, max_new_tokens=max_tokens, do_sample=False)
    new = output[0, enc["input_ids"].shape[1]:]
    return str(tokenizer.decode(new, skip_special_tokens=True)).strip()


def verify(source: Path, out: Path, max_tokens: int = 32) -> bool:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(out), n_ctx=512, n_threads=1, verbose=False, seed=0)
    reply = llm.create_chat_completion(messages=QUESTION, max_tokens=max_tokens, temperature=0)
    gguf_text = str(reply["choices"][0]["message"]["content"]).strip()  # type: ignore[index]
    hf_text = hf_answer(source, max_tokens)
    print(f"HF   answer: {hf_text!r}\nGGUF answer: {gguf_text!r}")
    emb = llama_cpp.Llama(model_path=str(out), embedding=True, n_ctx=512, verbose=False,
                          pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN)
    vectors = emb.create_embedding(["Hello there", "What is the capital of France?"])["data"]
    sizes = [len(v["embedding"]) for v in vectors]
    hidden = json.loads((source / "config.json").read_text())["hidden_size"]
    print(f"embedding sizes: {sizes} (hidden size {hidden})")
    return gguf_text == hf_text and sizes == [hidden, hidden]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE, help="HF model directory")
    parser.add_argument("--out", type=Path, default=OUT_FILE, help="GGUF file to write")
    parser.add_argument("--verify", action="store_true", help="compare with the HF model")
    args = parser.parse_args(argv)
    convert(args.source, args.out)
    print(f"Wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    if args.verify and not verify(args.source, args.out):
        print("verification failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
