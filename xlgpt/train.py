"""Train the shipped toy model: a small GPT-2 on a synthetic corpus that this script writes.

    python -m xlgpt.train                      # reproduces xlgpt/models/toy (see docs/toy-model.md)
    python -m xlgpt.train --out /tmp/toy --steps 500 --seed 1
    python -m xlgpt.train --eval xlgpt/models/toy   # only print the probes, the logit lens and the steering demo

The corpus is generated from templates (days, months, counting, people and how they act, what they pull
out), so the model has to read its context: which day is named, whether the sentence asks for tomorrow or
yesterday, which adjective was used, whether the person is he or she, whether a Jedi was mentioned. The
tokenizer keeps exactly the GPT-2 merges that tokenize the corpus and the talk's demo words
(`Tokenizer.closure`), so every word gets GPT-2's own pieces, and the network is exactly GPT-2 (as xlgpt/reference.py):
learned wte/wpe, pre-LN blocks, LayerNorm eps 1e-5, tanh GELU, causal attention scaled by 1/sqrt(head_dim),
Conv1D weights [in, out] used as x @ W + b, LM head tied to wte. The result is saved in the Hugging Face
layout (config.json, model.safetensors, vocab.json, merges.txt) that `xlgpt.model.load_model` reads.

Training is deterministic on one machine for a given seed and thread count: the same command writes a
byte-identical model.safetensors. torch is needed only here (pip install torch==2.13.0).
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .model import GPT2Config, load_model
from .reference import gpt2, layer_norm, softmax
from .tokenizer import Tokenizer

TOY_DIR = Path(__file__).parent / "models" / "toy"

# ---- the synthetic corpus ---------------------------------------------------------------------------
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
HE = ["Mike", "John", "Tom", "Sam", "Paul", "David", "James", "Peter", "Ben", "Jack", "Max", "Bob", "Dan", "Tim",
      "Joe", "Leo", "Adam", "Mark", "Luke", "Eric"]
SHE = ["Anna", "Mary", "Lisa", "Emma", "Sarah", "Kate", "Lucy", "Jane", "Sue", "Alice", "Amy", "Eve", "Rose",
       "Emily", "Julia", "Laura", "Nina", "Olivia", "Sophie", "Grace"]
ADVERBS = {  # adjective -> adverb
    "quick": "quickly", "slow": "slowly", "quiet": "quietly", "loud": "loudly", "careful": "carefully",
    "happy": "happily", "sad": "sadly", "calm": "calmly", "brave": "bravely", "polite": "politely",
    "angry": "angrily", "gentle": "gently", "soft": "softly", "proud": "proudly", "neat": "neatly",
    "kind": "kindly", "nice": "nicely", "warm": "warmly", "rude": "rudely", "wise": "wisely", "lazy": "lazily",
    "eager": "eagerly", "clever": "cleverly", "patient": "patiently", "honest": "honestly", "busy": "busily",
    "shy": "shyly", "bold": "boldly", "sweet": "sweetly", "cheerful": "cheerfully",
}
ADJECTIVES = list(ADVERBS)
VERBS = ["moves", "walks", "runs", "talks", "speaks", "works", "sings", "reads", "writes", "eats", "plays",
         "drives", "answers", "smiles", "dances", "laughs", "swims", "cooks", "paints", "waits", "listens",
         "thinks", "jumps", "climbs"]
THING_VERBS = ["pulls out", "picks up", "looks at"]


# (template, offset of the answer): "{}" is the day or month the sentence starts from
DAY_FORMS = [
    ("If today is {}, tomorrow is", 1), ("If today is {}, yesterday was", -1), ("Today is {}, so tomorrow is", 1),
    ("Yesterday was {}, so today is", 1), ("If tomorrow is {}, today is", -1), ("The day after {} is", 1),
    ("The day before {} is", -1), ("After {} comes", 1), ("Before {} comes", -1),
]
MONTH_FORMS = [
    ("After {} comes", 1), ("Before {} comes", -1), ("The month after {} is", 1), ("The month before {} is", -1),
    ("If this month is {}, next month is", 1), ("If this month is {}, last month was", -1),
]


def _cycle(r: random.Random, names: list[str], forms: list[tuple[str, int]]) -> tuple[str, str, str]:
    """One sentence from `forms`, or (as often as one form) a list of consecutive names to continue."""
    i = r.randrange(len(names))
    name = lambda k: names[(i + k) % len(names)]  # noqa: E731
    form = r.randrange(len(forms) + 1)
    if form < len(forms):
        template, k = forms[form]
        return template.format(name(0)), name(k), "."
    n = r.randint(3, 5)
    return ", ".join(name(k) for k in range(n - 1)) + ",", name(n - 1), "."


def _days(r: random.Random) -> tuple[str, str, str]:
    return _cycle(r, DAYS, DAY_FORMS)


def _months(r: random.Random) -> tuple[str, str, str]:
    return _cycle(r, MONTHS, MONTH_FORMS)


def _counting(r: random.Random) -> tuple[str, str, str]:
    form = r.randrange(5)
    n = r.randint(3, 6)
    if form in (0, 1):  # number words, counting up (twice as often) ...
        start = 0 if r.random() < 0.4 else r.randrange(len(NUMBERS) - n + 1)
        run = NUMBERS[start : start + n]
    elif form == 2:  # ... or down
        start = r.randrange(n - 1, len(NUMBERS))
        run = NUMBERS[start - n + 1 : start + 1][::-1]
    elif form == 3:  # digits, up or down
        start = r.randint(1, 21 - n)
        run = [str(k) for k in range(start, start + n)]
        if r.random() < 0.3:
            run.reverse()
    else:
        k = r.randrange(1, len(NUMBERS) - 1)
        if r.random() < 0.5:
            return f"The number after {NUMBERS[k]} is", NUMBERS[k + 1], "."
        return f"The number before {NUMBERS[k]} is", NUMBERS[k - 1], "."
    return ", ".join(run[:-1]) + ",", run[-1], "."


def _person(r: random.Random) -> tuple[str, str, str]:
    he = r.random() < 0.5
    name = r.choice(HE if he else SHE)
    pron = "He" if he else "She"
    adj = r.choice(ADJECTIVES)
    adv = ADVERBS[adj]
    verb = r.choice(VERBS)
    form = r.randrange(6)
    if form in (0, 1):
        return f"{name} is {adj}. {pron} {verb}", adv, "."
    if form == 2:
        return f"{name} is very {adj}. {pron} always {verb}", adv, "."
    if form == 3:
        return f"{name} is {adj}, so {pron.lower()} {verb}", adv, "."
    if form == 4:
        return f"{name} {verb} {adv} because {pron.lower()} is", adj, "."
    # two people: the pronoun says whose adjective applies
    other = r.choice(SHE if he else HE)
    adj2 = r.choice([a for a in ADJECTIVES if a != adj])
    first = f"{name} is {adj} and {other} is {adj2}." if r.random() < 0.5 else f"{other} is {adj2} and {name} is {adj}."
    return f"{first} {pron} {verb}", adv, "."


def _things(r: random.Random) -> tuple[str, str, str]:
    """What someone pulls out: a phone, unless a Jedi is in the context (the talk's steering demo)."""
    he = r.random() < 0.5
    name = r.choice(HE if he else SHE)
    pron, his = ("He", "his") if he else ("She", "her")
    verb = r.choice(THING_VERBS)
    form = r.randrange(6)
    if form == 0:
        return f"{name} {verb} {his}", "phone", "."
    if form == 1:
        return f"{name} is {r.choice(ADJECTIVES)}. {pron} {verb} {his}", "phone", "."
    if form == 2:
        return f"The Jedi {verb} his", "lightsaber", "."
    if form == 3:
        return f"{name} is a Jedi. {pron} {verb} {his}", "lightsaber", "."
    if form == 4:
        return f"{name} is a Jedi, so {pron.lower()} {verb} {his}", "lightsaber", "."
    return f"The Jedi is {r.choice(ADJECTIVES)}. He {verb} his", "lightsaber", "."


FAMILIES = {"days": (_days, 0.24), "months": (_months, 0.16), "counting": (_counting, 0.16),
            "people": (_person, 0.28), "things": (_things, 0.16)}


def question(r: random.Random) -> tuple[str, str, str, str]:
    """One templated passage as (family, prompt, answer word, ending): text = prompt + " " + answer + ending."""
    family = r.choices(list(FAMILIES), weights=[w for _, w in FAMILIES.values()])[0]
    prompt, answer, end = FAMILIES[family][0](r)
    return family, prompt, answer, end


def corpus(seed: int, n: int) -> list[str]:
    """n passages of the synthetic corpus; pure Python, the same list for the same seed."""
    r = random.Random(seed)
    out = []
    for _ in range(n):
        _, prompt, answer, end = question(r)
        out.append(f"{prompt} {answer}{end}")
    return out


# ---- probes: the canonical prompts and their answers, each one whole token ------------------------------
# The shipped model predicts each of these (argmax) in the float64 NumPy reference, by a wide margin. Every
# prompt plus its answer fits in 16 tokens, the workbook's default context.
PROBES: list[tuple[str, str]] = [
    ("If today is Tuesday, tomorrow is", " Wednesday"),
    *[(f"If today is {d}, tomorrow is", " " + DAYS[(i + 1) % 7]) for i, d in enumerate(DAYS) if d != "Tuesday"],
    ("If today is Friday, yesterday was", " Thursday"),
    ("The day before Monday is", " Sunday"),
    ("Mike is quick. He moves", " quickly"),
    ("Anna is slow. She walks", " slowly"),
    ("Emma is calm, so she waits", " calmly"),
    ("Tom is very happy. He always smiles", " happily"),
    ("Mike is quick.", " He"),
    ("After March comes", " April"),
    ("The month before January is", " December"),
    ("one, two,", " three"),
    ("The number after five is", " six"),
    ("Mike pulls out his", " phone"),
    ("The Jedi pulls out his", " lightsaber"),
]

# The talk's prompts and words: the tokenizer keeps the merges GPT-2 applies to them too.
DEMO_TEXTS = ["Mike is quick. He moves", "If today is Tuesday, tomorrow is", "Mike pulls out his", " Jedi",
              " lightsaber", " phone", " quickly", " Wednesday", "funology", "reinjury"]
# Steering demo: resid_pre(" Jedi") - resid_pre(" phone") entering block STEER_LAYER, times STEER_COEF, added at
# every position of "Mike pulls out his", turns " phone" into " lightsaber".
STEER_PROMPT, STEER_PLUS, STEER_MINUS = "Mike pulls out his", " Jedi", " phone"
STEER_LAYER, STEER_COEF = 2, 0.5


def toy_tokenizer(texts: list[str]) -> Tokenizer:
    """GPT-2's own merges that tokenize `texts` and the talk's demo texts (Tokenizer.closure)."""
    return _gpt2().closure([*texts, *DEMO_TEXTS])


# ---- the network (mirrors xlgpt/reference.py) ----------------------------------------------------------
def build_network(cfg: GPT2Config):
    """A torch GPT-2 whose state_dict is a Hugging Face GPT2Model checkpoint (wte.weight, h.0.ln_1.weight, ...)."""
    import torch
    from torch import nn

    C, H = cfg.n_embd, cfg.n_head

    class Conv1D(nn.Module):  # GPT-2's linear layer: weight [in, out], used as x @ W + b
        def __init__(self, n_in: int, n_out: int, std: float) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(n_in, n_out) * std)
            self.bias = nn.Parameter(torch.zeros(n_out))

        def forward(self, x):
            return x @ self.weight + self.bias

    proj_std = 0.02 / math.sqrt(2 * cfg.n_layer)

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c_attn = Conv1D(C, 3 * C, 0.02)
            self.c_proj = Conv1D(C, C, proj_std)

        def forward(self, x):  # [B, N, C]
            B, N, _ = x.shape
            q, k, v = (m.reshape(B, N, H, C // H).transpose(1, 2) for m in self.c_attn(x).split(C, dim=-1))
            scores = q @ k.transpose(-1, -2) / math.sqrt(C // H)  # [B, H, N, N]
            causal = torch.ones(N, N, dtype=torch.bool).tril()
            weights = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
            z = (weights @ v).transpose(1, 2).reshape(B, N, C)  # the heads side by side
            return self.c_proj(z)

    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c_fc = Conv1D(C, 4 * C, 0.02)
            self.c_proj = Conv1D(4 * C, C, proj_std)

        def forward(self, x):
            h = self.c_fc(x)
            h = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))  # tanh GELU
            return self.c_proj(h)

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln_1 = nn.LayerNorm(C, eps=cfg.layer_norm_epsilon)
            self.attn = Attention()
            self.ln_2 = nn.LayerNorm(C, eps=cfg.layer_norm_epsilon)
            self.mlp = MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT2(nn.Module):  # state_dict keys are the Hugging Face ones: wte.weight, h.0.attn.c_attn.weight, ...
        def __init__(self) -> None:
            super().__init__()
            self.wte = nn.Embedding(cfg.vocab_size, C)
            self.wpe = nn.Embedding(cfg.n_ctx, C)
            nn.init.normal_(self.wte.weight, std=0.02)
            nn.init.normal_(self.wpe.weight, std=0.01)
            self.h = nn.ModuleList(Block() for _ in range(cfg.n_layer))
            self.ln_f = nn.LayerNorm(C, eps=cfg.layer_norm_epsilon)

        def forward(self, ids):  # [B, N] -> logits [B, N, V]
            x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
            for block in self.h:
                x = block(x)
            return self.ln_f(x) @ self.wte.weight.T  # the LM head is tied to wte

    return GPT2()


# ---- training ---------------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 32
    n_ctx: int = 32
    steps: int = 3000
    batch: int = 32
    lr: float = 3e-3
    warmup: int = 200
    weight_decay: float = 0.05
    seed: int = 0
    threads: int = 1  # one thread: as fast as two for this size, and steady when the machine is busy
    corpus_size: int = 50000
    bos_rate: float = 0.25  # share of sequences that start with <|endoftext|> (the workbook's --bos)
    mid_rate: float = 0.1  # share that start inside a passage (so " Jedi" at position 0, as steering reads it)


def _batch(r: random.Random, passages: list[list[int]], n: int, length: int, eot: int, nl: int,
           bos_rate: float, mid_rate: float) -> list[list[int]]:
    """n rows of `length` tokens: passages separated by newlines, each row starting at a passage, at
    <|endoftext|> (bos_rate) or, like GPT-2's random windows, inside a passage (mid_rate)."""
    rows = []
    for _ in range(n):
        u = r.random()
        row = [eot] if u < bos_rate else []
        if bos_rate <= u < bos_rate + mid_rate:
            first = r.choice(passages)
            row = first[r.randrange(1, len(first)):] + [nl]
        while len(row) < length:
            row += r.choice(passages) + [nl]
        rows.append(row[:length])
    return rows


def _probe_score(net, tok: Tokenizer) -> str:
    """How many PROBES the network gets right now, and the least probability it gives a right answer."""
    import torch

    right, least, n_ctx = 0, 1.0, net.wpe.weight.shape[0]
    with torch.no_grad():
        for prompt, answer in PROBES:
            if len(tok.encode(prompt)) > n_ctx:  # a tiny test model with a short context
                continue
            probs = torch.softmax(net(torch.tensor([tok.encode(prompt)]))[0, -1], dim=-1)
            ok = int(torch.argmax(probs)) == tok.encode(answer)[0]
            right += ok
            least = min(least, float(probs[tok.encode(answer)[0]]))
    return f"{right}/{len(PROBES)} (min p {least:.2f})"


@functools.lru_cache(maxsize=1)
def _gpt2() -> Tokenizer:
    return Tokenizer.gpt2()


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def train(out: Path | str, tc: TrainConfig | None = None, log=print) -> dict:
    """Train, save the Hugging Face folder `out`, and return a summary (loss, time, sha256)."""
    import torch
    from safetensors.torch import save_file

    tc = tc or TrainConfig()
    t0 = time.perf_counter()
    torch.manual_seed(tc.seed)
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = False  # (deterministic anyway; filling costs time)
    torch.set_num_threads(tc.threads)
    torch.set_flush_denormal(True)

    texts = corpus(tc.seed, tc.corpus_size)
    tok = toy_tokenizer(["\n".join(texts)])
    cfg = GPT2Config(tc.n_layer, tc.n_head, tc.n_embd, tc.n_ctx, tok.vocab_size)
    nl = tok.encode("\n")
    assert len(nl) == 1
    passages = [tok.encode(p) for p in texts]
    held_out = [tok.encode(p) for p in corpus(tc.seed + 1_000_003, 500)]
    lengths = sorted(len(p) for p in passages)
    log(f"tokenizer: the {len(tok.merges)} GPT-2 merges the corpus uses, vocabulary {tok.vocab_size}; corpus {len(passages)} "
        f"passages, {sum(lengths)} tokens, {lengths[len(lengths) // 2]} median / {lengths[-1]} max per passage")
    for prompt, answer in PROBES:
        n = len(tok.encode(prompt))
        log(f"  probe {prompt!r} -> {answer!r}: {n} prompt tokens + 1")

    net = build_network(cfg)
    n_params = sum(p.numel() for p in net.parameters())
    log(f"model: {tc.n_layer} layers, {tc.n_head} heads, n_embd {tc.n_embd}, n_ctx {tc.n_ctx}: {n_params:,} parameters")
    decay = [p for p in net.parameters() if p.dim() == 2]
    no_decay = [p for p in net.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tc.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=tc.lr, betas=(0.9, 0.95))

    def lr_at(step: int) -> float:  # linear warm-up, cosine decay to 10%
        if step < tc.warmup:
            return tc.lr * (step + 1) / tc.warmup
        done = (step - tc.warmup) / max(1, tc.steps - tc.warmup)
        return tc.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * done)))

    r = random.Random(tc.seed + 7)
    losses = []
    for step in range(tc.steps):
        rows = torch.tensor(_batch(r, passages, tc.batch, tc.n_ctx + 1, tok.eot_id, nl[0], tc.bos_rate,
                                   tc.mid_rate))
        logits = net(rows[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab_size), rows[:, 1:].reshape(-1))
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 250 == 0 or step == tc.steps - 1:
            log(f"step {step:5d}  loss {np.mean(losses[-50:]):.4f}  lr {lr_at(step):.2e}  "
                f"probes {_probe_score(net, tok)}  {time.perf_counter() - t0:6.1f} s")
    train_time = time.perf_counter() - t0

    net.eval()
    with torch.no_grad():
        rows = torch.tensor(_batch(random.Random(tc.seed + 11), held_out, 256, tc.n_ctx + 1, tok.eot_id, nl[0],
                                   tc.bos_rate, tc.mid_rate))
        logits = net(rows[:, :-1])
        held_loss = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab_size), rows[:, 1:].reshape(-1)).item()

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in net.state_dict().items()}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    os.chmod(out / "model.safetensors", 0o644)  # safetensors creates it owner-only
    hf = {**cfg.to_hf(), "bos_token_id": tok.eot_id, "eos_token_id": tok.eot_id}
    (out / "config.json").write_text(json.dumps(hf, indent=2) + "\n", encoding="utf-8")
    tok.save(out)
    digest = sha256(out / "model.safetensors")
    final_loss = float(np.mean(losses[-100:]))
    log(f"trained {tc.steps} steps in {train_time:.1f} s; final loss {final_loss:.4f} (mean of the last 100 steps), "
        f"held-out loss {held_loss:.4f}")
    log(f"saved {out}: model.safetensors sha256 {digest}")
    return {"config": asdict(tc), "n_params": n_params, "vocab_size": tok.vocab_size, "train_time": train_time,
            "final_loss": final_loss, "held_out_loss": held_loss, "sha256": digest, "out": str(out)}


# ---- evaluation with the NumPy reference ---------------------------------------------------------------
def predict(model, prompt: str, bos: bool = False) -> tuple[np.ndarray, list[int]]:
    """Next-token probabilities [V] for `prompt` from xlgpt.reference.gpt2 (float64)."""
    ids = ([model.tokenizer.eot_id] if bos else []) + model.tokenizer.encode(prompt)
    t = gpt2(ids, model.params, model.config)
    return t["prediction_probs"][:, 0], ids


def logit_lens(model, prompt: str, answer: str) -> list[dict]:
    """The residual stream entering each block and after the last, through ln_f and the tied unembedding:
    the answer token's rank (1 = top) and probability, and the top token, at the last position."""
    ids = model.tokenizer.encode(prompt)
    answer_id = model.tokenizer.encode(answer)[0]
    cfg = model.config
    t = gpt2(ids, model.params, cfg)
    f64 = lambda name: np.asarray(model.params[name], dtype=np.float64)  # noqa: E731
    streams = [(f"block {i} in", t[f"block_{i}_resid_pre"]) for i in range(cfg.n_layer)]
    streams.append((f"block {cfg.n_layer - 1} out", t[f"block_{cfg.n_layer - 1}_resid_post"]))
    rows = []
    for label, x in streams:
        h = layer_norm(x[-1:], f64("ln_f_w"), f64("ln_f_b"), cfg.layer_norm_epsilon)[0]
        probs = softmax(h @ f64("wte").T)[0]
        rank = int(np.sum(probs > probs[answer_id])) + 1
        top = int(np.argmax(probs))
        rows.append({"stream": label, "rank": rank, "prob": float(probs[answer_id]),
                     "top": model.tokenizer.token_text(top), "top_prob": float(probs[top])})
    return rows


def steered(model, layer: int = STEER_LAYER, coef: float = STEER_COEF) -> dict:
    """The steering demo in the NumPy reference: the activation difference (xlgpt.steering) added at every position."""
    from .steering import activation_diff

    vector = activation_diff(model, STEER_PLUS, STEER_MINUS, layer)
    ids = model.tokenizer.encode(STEER_PROMPT)
    base = gpt2(ids, model.params, model.config)["prediction_probs"][:, 0]
    probs = gpt2(ids, model.params, model.config, steer=(layer, coef * vector))["prediction_probs"][:, 0]
    top = int(np.argmax(probs))
    return {"base": model.tokenizer.token_text(int(np.argmax(base))), "top": model.tokenizer.token_text(top),
            "top_prob": float(probs[top]), "vector": vector}


def steer_grid(model, coefs=(0.25, 0.4, 0.5, 0.6, 0.75, 1, 2)) -> dict[int, list[tuple[float, str]]]:
    """The steered prediction for each layer and coefficient (to choose STEER_LAYER and STEER_COEF)."""
    return {layer: [(c, steered(model, layer, c)["top"]) for c in coefs] for layer in range(model.config.n_layer)}


def greedy(model, prompt: str, n: int) -> str:
    ids = model.tokenizer.encode(prompt)
    for _ in range(n):
        t = gpt2(ids, model.params, model.config)
        ids.append(int(t["next_token_id"][0, 0]))
    return model.tokenizer.decode(ids)


def quiz(model, seed: int = 12345, n: int = 400) -> dict[str, float]:
    """Share of fresh templated questions whose answer's first token is the reference's argmax, per family."""
    r = random.Random(seed)
    right: dict[str, list[bool]] = {f: [] for f in FAMILIES}
    for _ in range(n):
        family, prompt, answer, _ = question(r)
        probs, _ = predict(model, prompt)
        right[family].append(int(np.argmax(probs)) == model.tokenizer.encode(" " + answer)[0])
    return {f: float(np.mean(v)) for f, v in right.items() if v}


def evaluate(folder: Path | str, log=print) -> dict:
    """Probes (with and without <|endoftext|> first), greedy continuations, logit lens and a quiz, in NumPy."""
    model = load_model(str(folder))
    tok = model.tokenizer
    results = []
    log(f"probes ({folder}, float64 NumPy reference):")
    for prompt, answer in PROBES:
        probs, ids = predict(model, prompt)
        order = np.argsort(-probs, kind="stable")
        best, second = int(order[0]), int(order[1])
        bos_probs, _ = predict(model, prompt, bos=True)
        ok = tok.token_text(best) == answer
        results.append({"prompt": prompt, "answer": answer, "predicted": tok.token_text(best), "ok": ok,
                        "prob": float(probs[best]), "second": tok.token_text(second), "second_prob": float(probs[second]),
                        "tokens": len(ids), "bos_ok": tok.token_text(int(np.argmax(bos_probs))) == answer})
        log(f"  {'ok ' if ok else 'BAD'} {prompt!r} -> {tok.token_text(best)!r} p={probs[best]:.3f} "
            f"(expected {answer!r}; next {tok.token_text(second)!r} p={probs[second]:.3f}; "
            f"with <|endoftext|> first: {'ok' if results[-1]['bos_ok'] else 'BAD'})")
    log("greedy continuations:")
    for prompt, _ in PROBES:
        log(f"  {greedy(model, prompt, 6)!r}")
    lens = {}
    for prompt, answer in PROBES:
        lens[prompt] = logit_lens(model, prompt, answer)
    prompt, answer = PROBES[0]
    log(f"logit lens for {prompt!r} -> {answer!r} (rank and probability of the answer; top token):")
    for row in lens[prompt]:
        log(f"  {row['stream']:12s} rank {row['rank']:5d}  p={row['prob']:.4f}   top {row['top']!r} p={row['top_prob']:.3f}")
    log("answer rank through the layers, every probe: " + "; ".join(
        f"{a!r}: " + " ".join(str(row["rank"]) for row in lens[p]) for p, a in PROBES))
    steer = steered(model)
    log(f"steering: {STEER_PROMPT!r} + {STEER_COEF} x (resid_pre({STEER_PLUS!r}) - resid_pre({STEER_MINUS!r})) "
        f"entering block {STEER_LAYER} -> {steer['top']!r} p={steer['top_prob']:.3f} "
        f"(unsteered {steer['base']!r}); " + "; ".join(
            f"L{layer}: " + " ".join(f"{c:g}:{t!r}" for c, t in row) for layer, row in steer_grid(model).items()))
    scores = quiz(model)
    log("quiz on fresh templated questions (first token of the answer is the argmax): "
        + ", ".join(f"{f} {s:.0%}" for f, s in scores.items()))
    return {"probes": results, "lens": lens, "quiz": scores, "steer": steer, "sha256": sha256(Path(folder) / "model.safetensors")}


def main(argv: list[str] | None = None) -> int:
    d = TrainConfig()
    ap = argparse.ArgumentParser(prog="python -m xlgpt.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(TOY_DIR), help="model folder to write (default: the shipped toy model)")
    ap.add_argument("--eval", metavar="FOLDER", help="only evaluate an existing model folder")
    ap.add_argument("--steps", type=int, default=d.steps)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--layers", type=int, default=d.n_layer)
    ap.add_argument("--heads", type=int, default=d.n_head)
    ap.add_argument("--embd", type=int, default=d.n_embd)
    ap.add_argument("--ctx", type=int, default=d.n_ctx)
    ap.add_argument("--batch", type=int, default=d.batch)
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--mid-rate", type=float, default=d.mid_rate, help="share of rows starting inside a passage")
    ap.add_argument("--threads", type=int, default=d.threads, help="torch threads (results depend on it)")
    a = ap.parse_args(argv)
    if a.eval:
        evaluate(a.eval)
        return 0
    tc = TrainConfig(n_layer=a.layers, n_head=a.heads, n_embd=a.embd, n_ctx=a.ctx, steps=a.steps,
                     batch=a.batch, lr=a.lr, seed=a.seed, threads=a.threads,
                     mid_rate=a.mid_rate)
    summary = train(a.out, tc)
    evaluate(a.out)
    print(f"sha256 {summary['sha256']}  {Path(a.out) / 'model.safetensors'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
