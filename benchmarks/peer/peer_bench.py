#!/usr/bin/env python3
"""The peer side of `./build.sh bench peer`: Hugging Face LlamaForSequenceClassification + PEFT, in PyTorch eager.

When `transformers` and `peft` import, the model is built from them (LlamaConfig, LlamaForSequenceClassification,
get_peft_model with LoraConfig / PromptTuningConfig / PrefixTuningConfig) and `peer_impl` says
"transformers+peft". Otherwise the same computation is written out below from the transformers 4.40 and PEFT 0.10
sources (modeling_llama.py, peft/tuners/lora/layer.py, peft/peft_model.py) and `peer_impl` says "pytorch":

- RMSNorm in float32, rotary embedding recomputed in every attention layer (4.40 keeps a LlamaRotaryEmbedding per
  layer), rotate_half, SwiGLU MLP, separate q/k/v/o projections, repeat_kv;
- attention: SDPA when torch has it (torch >= 2.1.1 is what 4.40 needs to pick "sdpa"), else "eager"
  (matmul, additive causal mask built by _update_causal_mask, float32 softmax, matmul);
- LlamaForSequenceClassification: score over every position, then the last non-pad token's logits;
- PEFT LoRA: base(x) + lora_B(lora_A(dropout(x))) * alpha / r, unmerged (as PEFT scores unless merge_and_unload);
- PEFT prompt tuning: the prompt embedding table looked up for arange(n) per row and prepended to the word
  embeddings, mask extended by ones;
- PEFT prefix tuning: the prefix table [n, layers*2*hidden] viewed and permuted into past_key_values, mask extended
  by ones, positions n..n+T-1 (a past of length n).

The training step is the HF Trainer's: forward, cross-entropy, backward, clip_grad_norm_(1.0), AdamW step, zero_grad.
Inference is model.eval() under torch.no_grad().

Run with --serve: the C# driver (benchmarks/Microsoft.ML.LabelTuning.Benchmarks, `peer`) sends one command a line
and reads one JSON line back, so the two sides alternate in one invocation:
    config                          -> the config this side runs, in full
    peak                            -> this process's fp32 matmul peak (same shapes as MatmulPeak.cs)
    time METHOD PHASE RUNS WARMUP   -> median ms of RUNS steps after WARMUP steps
    epoch FILE BATCH SEED           -> one LoRA training epoch over the token ids in FILE (JSON: ids, labels) with the
                                       HF Trainer's default data path: RandomSampler order, batches of BATCH padded to
                                       the longest row (DataCollatorWithPadding, right padding with pad_token_id)
    shape BATCH SEQUENCE PHASE RUNS WARMUP
                                    -> median ms of a LoRA step at [BATCH, SEQUENCE] (random tokens) and the peak RSS
                                       while it ran (VmHWM, reset through /proc/self/clear_refs before the runs)
    quit
"""

import argparse
import ctypes
import json
import math
import os
import statistics
import sys
import time


def pick_openblas_core():
    """Debian's torch multiplies through libblas.so.3; OpenBLAS 0.3.21 (bookworm) does not recognise newer Xeons
    and falls back to its Prescott kernels (about a fifth of the speed). Name the kernel from the CPU flags unless
    the caller did. Returns the core OpenBLAS reports, or None where the BLAS is not OpenBLAS."""
    if "OPENBLAS_CORETYPE" not in os.environ:
        try:
            flags = next((line for line in open("/proc/cpuinfo") if line.startswith("flags")), "").split()
        except OSError:
            flags = []
        if "avx512_bf16" in flags:
            os.environ["OPENBLAS_CORETYPE"] = "Cooperlake"
        elif "avx512f" in flags:
            os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
        elif "avx2" in flags:
            os.environ["OPENBLAS_CORETYPE"] = "Haswell"


pick_openblas_core()
import torch  # noqa: E402 - after OPENBLAS_CORETYPE is set


def blas_name():
    for name in ("libblas.so.3", "libopenblas.so.0"):
        try:
            lib = ctypes.CDLL(name)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return "OpenBLAS " + lib.openblas_get_corename().decode()
        except (OSError, AttributeError):
            continue
    return "not OpenBLAS (" + torch.__config__.show().split("BLAS_INFO=")[-1].split(",")[0] + ")"

import torch.nn as nn
import torch.nn.functional as F

CONFIG = dict(
    hidden=256, layers=4, heads=4, kv_heads=4, intermediate=688, vocab=32000, batch=8, sequence=128,
    dtype="float32", threads=2, lora_rank=8, lora_alpha=32, lora_dropout=0.1, lora_targets="q_proj,v_proj",
    labels=4, virtual_tokens=20, rms_norm_eps=1e-5, rope_theta=10000.0, learning_rate=1e-4, max_grad_norm=1.0,
    weight_decay=0.0, pad_token_id=0)


def has_sdpa():
    return hasattr(F, "scaled_dot_product_attention") and tuple(
        int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 1)


# ----------------------------------------------------------------------------------------------------------------
# Plain PyTorch: transformers 4.40 modeling_llama.py, the parts a Llama sequence classifier runs.
# ----------------------------------------------------------------------------------------------------------------
class LlamaRMSNorm(nn.Module):
    def __init__(self, hidden, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


class LlamaRotaryEmbedding(nn.Module):
    def __init__(self, dim, base):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    @torch.no_grad()
    def forward(self, x, position_ids):
        inv_freq_expanded = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
        position_ids_expanded = position_ids[:, None, :].float()
        freqs = (inv_freq_expanded.float() @ position_ids_expanded.float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype=x.dtype), emb.sin().to(dtype=x.dtype)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin):
    cos = cos.unsqueeze(1)
    sin = sin.unsqueeze(1)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


def repeat_kv(hidden_states, n_rep):
    batch, kv_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, kv_heads, n_rep, slen, head_dim)
    return hidden_states.reshape(batch, kv_heads * n_rep, slen, head_dim)


class LoraLinear(nn.Module):
    """peft/tuners/lora/layer.py Linear, one adapter, unmerged."""

    def __init__(self, base_layer, r, alpha, dropout):
        super().__init__()
        self.base_layer = base_layer
        self.lora_dropout = nn.Dropout(p=dropout) if dropout > 0.0 else nn.Identity()
        self.lora_A = nn.Linear(base_layer.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base_layer.out_features, bias=False)
        self.scaling = alpha / r
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x):
        result = self.base_layer(x)
        x = x.to(self.lora_A.weight.dtype)
        return result + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling


class LlamaAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.num_heads = c["heads"]
        self.num_key_value_heads = c["kv_heads"]
        self.head_dim = c["hidden"] // c["heads"]
        self.num_key_value_groups = self.num_heads // self.num_key_value_heads
        self.q_proj = nn.Linear(c["hidden"], self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(c["hidden"], self.num_key_value_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(c["hidden"], self.num_key_value_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, c["hidden"], bias=False)
        self.rotary_emb = LlamaRotaryEmbedding(self.head_dim, c["rope_theta"])
        self.sdpa = has_sdpa()

    def forward(self, hidden_states, attention_mask, position_ids, past_key_value):
        bsz, q_len, _ = hidden_states.size()
        query_states = self.q_proj(hidden_states)
        key_states = self.k_proj(hidden_states)
        value_states = self.v_proj(hidden_states)
        query_states = query_states.view(bsz, q_len, self.num_heads, self.head_dim).transpose(1, 2)
        key_states = key_states.view(bsz, q_len, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        value_states = value_states.view(bsz, q_len, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        cos, sin = self.rotary_emb(value_states, position_ids)
        query_states, key_states = apply_rotary_pos_emb(query_states, key_states, cos, sin)
        if past_key_value is not None:  # DynamicCache.update: concatenate along the sequence
            key_states = torch.cat([past_key_value[0], key_states], dim=-2)
            value_states = torch.cat([past_key_value[1], value_states], dim=-2)
        key_states = repeat_kv(key_states, self.num_key_value_groups)
        value_states = repeat_kv(value_states, self.num_key_value_groups)

        if self.sdpa:  # LlamaSdpaAttention
            causal_mask = attention_mask
            if causal_mask is not None:
                causal_mask = causal_mask[:, :, :, : key_states.shape[-2]]
            attn_output = F.scaled_dot_product_attention(
                query_states.contiguous(), key_states.contiguous(), value_states.contiguous(),
                attn_mask=causal_mask, dropout_p=0.0, is_causal=causal_mask is None and q_len > 1)
        else:  # LlamaAttention (eager)
            attn_weights = torch.matmul(query_states, key_states.transpose(2, 3)) / math.sqrt(self.head_dim)
            if attention_mask is not None:
                attn_weights = attn_weights + attention_mask[:, :, :, : key_states.shape[-2]]
            attn_weights = F.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query_states.dtype)
            attn_weights = F.dropout(attn_weights, p=0.0, training=self.training)
            attn_output = torch.matmul(attn_weights, value_states)
        attn_output = attn_output.transpose(1, 2).contiguous().reshape(bsz, q_len, -1)
        return self.o_proj(attn_output)


class LlamaMLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gate_proj = nn.Linear(c["hidden"], c["intermediate"], bias=False)
        self.up_proj = nn.Linear(c["hidden"], c["intermediate"], bias=False)
        self.down_proj = nn.Linear(c["intermediate"], c["hidden"], bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = LlamaAttention(c)
        self.mlp = LlamaMLP(c)
        self.input_layernorm = LlamaRMSNorm(c["hidden"], c["rms_norm_eps"])
        self.post_attention_layernorm = LlamaRMSNorm(c["hidden"], c["rms_norm_eps"])

    def forward(self, hidden_states, attention_mask, position_ids, past_key_value):
        residual = hidden_states
        hidden_states = self.input_layernorm(hidden_states)
        hidden_states = self.self_attn(hidden_states, attention_mask, position_ids, past_key_value)
        hidden_states = residual + hidden_states
        residual = hidden_states
        hidden_states = self.post_attention_layernorm(hidden_states)
        hidden_states = self.mlp(hidden_states)
        return residual + hidden_states


class LlamaModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab"], c["hidden"], c["pad_token_id"])
        self.layers = nn.ModuleList([LlamaDecoderLayer(c) for _ in range(c["layers"])])
        self.norm = LlamaRMSNorm(c["hidden"], c["rms_norm_eps"])
        self.sdpa = has_sdpa()

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, past_key_values=None):
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        past_seen_tokens = 0 if past_key_values is None else past_key_values[0][0].shape[-2]
        cache_position = torch.arange(past_seen_tokens, past_seen_tokens + inputs_embeds.shape[1])
        position_ids = cache_position.unsqueeze(0)
        causal_mask = self._update_causal_mask(attention_mask, inputs_embeds, cache_position, past_seen_tokens)
        hidden_states = inputs_embeds
        for i, decoder_layer in enumerate(self.layers):
            past = None if past_key_values is None else past_key_values[i]
            hidden_states = decoder_layer(hidden_states, causal_mask, position_ids, past)
        return self.norm(hidden_states)

    def _update_causal_mask(self, attention_mask, input_tensor, cache_position, past_seen_tokens):
        if self.sdpa and (attention_mask is None or bool((attention_mask == 1).all())) \
                and past_seen_tokens == 0:
            return None  # AttentionMaskConverter._ignore_causal_mask_sdpa: SDPA's is_causal instead of a mask
        dtype = input_tensor.dtype
        min_dtype = torch.finfo(dtype).min
        sequence_length = input_tensor.shape[1]
        target_length = attention_mask.shape[-1] if attention_mask is not None else past_seen_tokens + sequence_length
        causal_mask = torch.full((sequence_length, target_length), fill_value=min_dtype, dtype=dtype)
        if sequence_length != 1:
            causal_mask = torch.triu(causal_mask, diagonal=1)
        causal_mask *= torch.arange(target_length) > cache_position.reshape(-1, 1)
        causal_mask = causal_mask[None, None, :, :].expand(input_tensor.shape[0], 1, -1, -1)
        if attention_mask is not None:
            causal_mask = causal_mask.clone()
            mask_length = attention_mask.shape[-1]
            padding_mask = causal_mask[..., :mask_length].eq(0.0) * attention_mask[:, None, None, :].eq(0.0)
            causal_mask[..., :mask_length] = causal_mask[..., :mask_length].masked_fill(padding_mask, min_dtype)
        return causal_mask


class LlamaForSequenceClassification(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.num_labels = c["labels"]
        self.pad_token_id = c["pad_token_id"]
        self.model = LlamaModel(c)
        self.score = nn.Linear(c["hidden"], self.num_labels, bias=False)
        for module in self.modules():  # LlamaPreTrainedModel._init_weights, initializer_range 0.02
            if isinstance(module, nn.Linear):
                module.weight.data.normal_(mean=0.0, std=0.02)
            elif isinstance(module, nn.Embedding):
                module.weight.data.normal_(mean=0.0, std=0.02)
                module.weight.data[module.padding_idx].zero_()

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, past_key_values=None, labels=None):
        hidden_states = self.model(input_ids, attention_mask, inputs_embeds, past_key_values)
        logits = self.score(hidden_states)
        batch_size = hidden_states.shape[0]
        if input_ids is not None:
            sequence_lengths = torch.eq(input_ids, self.pad_token_id).int().argmax(-1) - 1
            sequence_lengths = sequence_lengths % input_ids.shape[-1]
        else:
            sequence_lengths = -1
        pooled_logits = logits[torch.arange(batch_size), sequence_lengths]
        loss = None
        if labels is not None:
            loss = F.cross_entropy(pooled_logits.view(-1, self.num_labels), labels.view(-1))
        return loss, pooled_logits


class PeftSequenceClassifier(nn.Module):
    """PeftModelForSequenceClassification.forward for LORA, PROMPT_TUNING and PREFIX_TUNING (peft 0.10)."""

    def __init__(self, c, method):
        super().__init__()
        self.c = c
        self.method = method
        self.base_model = LlamaForSequenceClassification(c)
        for p in self.base_model.parameters():
            p.requires_grad_(False)
        self.base_model.score.weight.requires_grad_(True)  # modules_to_save: the classifier head trains
        n = c["virtual_tokens"]
        if method == "lora":
            for layer in self.base_model.model.layers:
                for name in c["lora_targets"].split(","):
                    base = getattr(layer.self_attn, name)
                    setattr(layer.self_attn, name,
                            LoraLinear(base, c["lora_rank"], c["lora_alpha"], c["lora_dropout"]))
        elif method == "prompt":  # PromptEmbedding, init RANDOM: nn.Embedding's N(0, 1)
            self.prompt_encoder = nn.Embedding(n, c["hidden"])
        elif method == "prefix":  # PrefixEncoder without projection
            self.prompt_encoder = nn.Embedding(n, c["layers"] * 2 * c["hidden"])
        self.register_buffer("prompt_tokens", torch.arange(n).long(), persistent=False)

    def forward(self, input_ids, attention_mask, labels=None):
        c = self.c
        if self.method == "lora":
            return self.base_model(input_ids, attention_mask, labels=labels)
        batch_size = input_ids.shape[0]
        n = c["virtual_tokens"]
        prefix_attention_mask = torch.ones(batch_size, n).to(attention_mask.device)
        attention_mask = torch.cat((prefix_attention_mask, attention_mask), dim=1)
        prompt_tokens = self.prompt_tokens.unsqueeze(0).expand(batch_size, -1)
        if self.method == "prefix":
            past_key_values = self.prompt_encoder(prompt_tokens)
            head_dim = c["hidden"] // c["heads"]
            past_key_values = past_key_values.view(batch_size, n, c["layers"] * 2, c["heads"], head_dim)
            past_key_values = past_key_values.permute([2, 0, 3, 1, 4]).split(2)
            return self.base_model(input_ids, attention_mask, past_key_values=past_key_values, labels=labels)
        inputs_embeds = self.base_model.model.embed_tokens(input_ids)
        prompts = self.prompt_encoder(prompt_tokens).to(inputs_embeds.dtype)
        inputs_embeds = torch.cat((prompts, inputs_embeds), dim=1)
        return self.base_model(None, attention_mask, inputs_embeds=inputs_embeds, labels=labels)


def build_transformers_peft(c, method):
    """The real libraries, when they import."""
    import transformers
    import peft

    config = transformers.LlamaConfig(
        vocab_size=c["vocab"], hidden_size=c["hidden"], intermediate_size=c["intermediate"],
        num_hidden_layers=c["layers"], num_attention_heads=c["heads"], num_key_value_heads=c["kv_heads"],
        rms_norm_eps=c["rms_norm_eps"], rope_theta=c["rope_theta"], num_labels=c["labels"],
        pad_token_id=c["pad_token_id"], torch_dtype="float32")
    base = transformers.LlamaForSequenceClassification(config)
    if method == "lora":
        pc = peft.LoraConfig(task_type=peft.TaskType.SEQ_CLS, r=c["lora_rank"], lora_alpha=c["lora_alpha"],
                             lora_dropout=c["lora_dropout"], target_modules=c["lora_targets"].split(","))
    elif method == "prompt":
        pc = peft.PromptTuningConfig(task_type=peft.TaskType.SEQ_CLS, num_virtual_tokens=c["virtual_tokens"])
    else:
        pc = peft.PrefixTuningConfig(task_type=peft.TaskType.SEQ_CLS, num_virtual_tokens=c["virtual_tokens"])
    model = peft.get_peft_model(base, pc)

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, input_ids, attention_mask, labels=None):
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
            return out.loss, out.logits

    return Wrapped(), f"transformers {transformers.__version__} + peft {peft.__version__}"


def build(c, method, impl):
    if impl == "transformers+peft":
        return build_transformers_peft(c, method)[0]
    return PeftSequenceClassifier(c, method)


def detect_impl(force_pytorch):
    if force_pytorch:
        return "pytorch", "plain PyTorch (forced)"
    try:
        import transformers  # noqa: F401
        import peft  # noqa: F401
        return "transformers+peft", f"transformers {transformers.__version__} + peft {peft.__version__}"
    except Exception:  # noqa: BLE001 - any import failure means: use the plain-PyTorch transcription
        return "pytorch", "transformers/peft not importable: plain-PyTorch transcription of their math"


# ----------------------------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------------------------
class Bench:
    def __init__(self, c, impl):
        self.c = c
        self.impl = impl
        self.models = {}
        g = torch.Generator().manual_seed(1)
        self.input_ids = torch.randint(3, c["vocab"], (c["batch"], c["sequence"]), generator=g)
        self.attention_mask = torch.ones(c["batch"], c["sequence"], dtype=torch.long)
        self.labels = torch.randint(0, c["labels"], (c["batch"],), generator=g)

    def model(self, method):
        if method not in self.models:
            torch.manual_seed(0)
            model = build(self.c, method, self.impl)
            trainable = [p for p in model.parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(trainable, lr=self.c["learning_rate"], weight_decay=self.c["weight_decay"])
            self.models[method] = (model, trainable, optimizer)
        return self.models[method]

    def step(self, method, phase):
        model, trainable, optimizer = self.model(method)
        if phase == "train":
            model.train()
            loss, _ = model(self.input_ids, self.attention_mask, labels=self.labels)
            loss.backward()
            loss.item()
            torch.nn.utils.clip_grad_norm_(trainable, self.c["max_grad_norm"])
            optimizer.step()
            optimizer.zero_grad()
        else:
            model.eval()
            with torch.no_grad():
                _, logits = model(self.input_ids, self.attention_mask)
                logits.softmax(-1)

    def train_on(self, method, input_ids, attention_mask, labels):
        model, trainable, optimizer = self.model(method)
        model.train()
        loss, _ = model(input_ids, attention_mask, labels=labels)
        loss.backward()
        loss.item()
        torch.nn.utils.clip_grad_norm_(trainable, self.c["max_grad_norm"])
        optimizer.step()
        optimizer.zero_grad()

    def epoch(self, path, batch, seed):
        """One epoch the way HF Trainer feeds it: a seeded random permutation, batches padded to their longest row."""
        with open(path) as f:
            data = json.load(f)
        rows, labels = data["ids"], data["labels"]
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(rows), generator=g).tolist()
        real = padded = steps = 0
        start = time.perf_counter()
        for b in range(0, len(order), batch):
            chunk = order[b:b + batch]
            longest = max(len(rows[i]) for i in chunk)
            input_ids = torch.full((len(chunk), longest), self.c["pad_token_id"], dtype=torch.long)
            attention_mask = torch.zeros(len(chunk), longest, dtype=torch.long)
            for r, i in enumerate(chunk):
                input_ids[r, :len(rows[i])] = torch.tensor(rows[i])
                attention_mask[r, :len(rows[i])] = 1
                real += len(rows[i])
            padded += len(chunk) * longest
            self.train_on("lora", input_ids, attention_mask, torch.tensor([labels[i] for i in chunk]))
            steps += 1
        ms = (time.perf_counter() - start) * 1000
        return dict(ms=ms, real_tokens=real, padded_tokens=padded, steps=steps)

    def shape(self, batch, sequence, phase, runs, warmup):
        g = torch.Generator().manual_seed(2)
        input_ids = torch.randint(3, self.c["vocab"], (batch, sequence), generator=g)
        attention_mask = torch.ones(batch, sequence, dtype=torch.long)
        labels = torch.randint(0, self.c["labels"], (batch,), generator=g)
        model, _, _ = self.model("lora")
        fixed_mmap_threshold()
        reset_peak_rss()
        rss_before = rss_bytes()

        def step():
            if phase == "train":
                self.train_on("lora", input_ids, attention_mask, labels)
            else:
                model.eval()
                with torch.no_grad():
                    _, logits = model(input_ids, attention_mask)
                    logits.softmax(-1)

        for _ in range(warmup):
            step()
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            step()
            samples.append((time.perf_counter() - start) * 1000)
        return dict(ms=statistics.median(samples), samples=samples, peak_rss_bytes=peak_rss_bytes(), rss_before_bytes=rss_before)

    def time(self, method, phase, runs, warmup):
        for _ in range(warmup):
            self.step(method, phase)
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            self.step(method, phase)
            samples.append((time.perf_counter() - start) * 1000)
        return samples


def fixed_mmap_threshold():
    """glibc: allocations of 64 KiB and more are mmapped and go back to the OS when freed (no dynamic threshold), so
    the peak RSS of one configuration is not hidden by heap kept from an earlier, larger one. The C# side does the same."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def rss_bytes():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss():
    """Linux: writing 5 to clear_refs resets VmHWM (the peak resident set) to the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_bytes():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def matmul_peak():
    best, best_shape = 0.0, ""
    for m, k, n in [(1024, 1024, 1024), (2048, 1024, 1024), (1024, 256, 688), (1024, 688, 256), (2048, 2048, 2048)]:
        a = torch.randn(m, k)
        b = torch.randn(k, n)
        for _ in range(3):
            a.matmul(b)
        flops = 2.0 * m * k * n
        repeats = max(5, int(4e9 / flops))
        start = time.perf_counter()
        for _ in range(repeats):
            a.matmul(b)
        gflops = flops * repeats / (time.perf_counter() - start) / 1e9
        if gflops > best:
            best, best_shape = gflops, f"{m}x{k}x{n}"
    return best, best_shape


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help="answer the C# driver's commands on stdin/stdout")
    parser.add_argument("--threads", type=int, default=CONFIG["threads"])
    parser.add_argument("--force-pytorch", action="store_true", help="use the transcription even if transformers imports")
    parser.add_argument("--method", default="lora", choices=["lora", "prompt", "prefix"])
    parser.add_argument("--phase", default="train", choices=["train", "inference"])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--config", default=None,
                        help="JSON object of CONFIG entries to replace (the realsize bench passes the 1B shapes)")
    args = parser.parse_args()

    c = dict(CONFIG, threads=args.threads)
    if args.config:
        c.update(json.loads(args.config))
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    impl, impl_note = detect_impl(args.force_pytorch)
    bench = Bench(c, impl)

    def emit(record):
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()

    if not args.serve:
        samples = bench.time(args.method, args.phase, args.runs, args.warmup)
        emit(dict(method=args.method, phase=args.phase, ms=statistics.median(samples), peer_impl=impl))
        return

    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        if words[0] == "config":
            emit(dict(config=c, peer_impl=impl, peer_impl_note=impl_note, torch=torch.__version__,
                      attention="sdpa" if has_sdpa() else "eager", blas=blas_name(), python=sys.version.split()[0]))
        elif words[0] == "peak":
            gflops, shape = matmul_peak()
            emit(dict(gflops_per_s=gflops, best_shape=shape))
        elif words[0] == "time":
            method, phase, runs, warmup = words[1], words[2], int(words[3]), int(words[4])
            samples = bench.time(method, phase, runs, warmup)
            emit(dict(ms=statistics.median(samples), samples=samples))
        elif words[0] == "epoch":
            emit(bench.epoch(words[1], int(words[2]), int(words[3])))
        elif words[0] == "shape":
            emit(bench.shape(int(words[1]), int(words[2]), words[3], int(words[4]), int(words[5])))
        else:
            emit(dict(error=f"unknown command {words[0]}"))


if __name__ == "__main__":
    main()
