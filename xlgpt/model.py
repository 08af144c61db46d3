"""GPT-2-family models: config, weights and tokenizer, from a folder, the hub, or built in.

`--model` accepts:
  toy                      the small model trained by `python -m xlgpt.train`, shipped in the package (default)
  tiny[:k=v,...]           a seeded random model with GPT-2's architecture (layers, heads, embd, merges, ctx, seed)
  random:gpt2              seeded random weights with the exact shapes of a known checkpoint and the real vocabulary
  PATH                     a folder in the Hugging Face layout: config.json, model.safetensors, vocab.json, merges.txt
  gpt2, openai-community/gpt2, distilgpt2, ...   downloaded and cached with huggingface_hub

Weights are held as float32 arrays named like the workbook's defined names: wte, wpe, h0_ln_1_w, h0_attn_c_attn_w,
... ln_f_w. Large checkpoints are read lazily, one tensor at a time.
"""
from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from . import contract
from .errors import XlgptError
from .tokenizer import Tokenizer

PACKAGE_MODELS = Path(__file__).parent / "models"
DEFAULT_MODEL = "toy"
HF_FILES = ("config.json", "model.safetensors", "vocab.json", "merges.txt")
KNOWN_CONFIGS = {
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, n_ctx=1024),
    "distilgpt2": dict(n_layer=6, n_head=12, n_embd=768, n_ctx=1024),
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024, n_ctx=1024),
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280, n_ctx=1024),
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600, n_ctx=1024),
}
TANH_GELU = {"gelu_new", "gelu_pytorch_tanh", "gelu_fast"}


SMALL_MODEL = 5_000_000  # parameters: below, weights stay in memory, the reference runs on them as written,
# and a recalculation takes a moment


@dataclass(frozen=True)
class GPT2Config:
    n_layer: int
    n_head: int
    n_embd: int
    n_ctx: int
    vocab_size: int
    layer_norm_epsilon: float = 1e-5

    def __post_init__(self) -> None:
        """Values a forward pass cannot run with are refused here, whatever the source of the config."""
        for key in ("n_layer", "n_head", "n_embd", "n_ctx", "vocab_size"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise XlgptError(f"{key} must be a whole number of at least 1, not {v!r}")
        if self.n_embd % self.n_head:
            raise XlgptError(f"n_embd {self.n_embd} is not a multiple of n_head {self.n_head}")
        eps = self.layer_norm_epsilon
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps <= 0:
            raise XlgptError(f"layer_norm_epsilon must be a finite number above 0, not {eps!r}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def n_params(self) -> int:
        """Counted by arithmetic (a config of a billion layers is refused by its size, not enumerated)."""
        C, L = self.n_embd, self.n_layer
        return (self.vocab_size + self.n_ctx) * C + L * (12 * C * C + 13 * C) + 2 * C

    @property
    def largest_tensor(self) -> int:
        return max(self.vocab_size * self.n_embd, self.n_ctx * self.n_embd, 4 * self.n_embd * self.n_embd)

    def to_hf(self) -> dict:
        return {
            "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new",
            "n_layer": self.n_layer, "n_head": self.n_head, "n_embd": self.n_embd, "n_positions": self.n_ctx,
            "n_ctx": self.n_ctx, "vocab_size": self.vocab_size, "layer_norm_epsilon": self.layer_norm_epsilon,
            "tie_word_embeddings": True,
        }


def param_shapes(cfg: GPT2Config) -> dict[str, tuple[int, ...]]:
    """Every tensor, in the order the workbook lays them out (the contract's). Conv1D weights are [in, out]."""
    return contract.param_shapes(cfg.n_layer, cfg.n_embd, cfg.vocab_size, cfg.n_ctx)


hf_key = contract.hf_key


def shape_of(cfg: GPT2Config, name: str) -> tuple[int, ...]:
    """One tensor's shape, without building param_shapes' dict (a config may claim a billion layers)."""
    return contract.param_shape(name, cfg.n_layer, cfg.n_embd, cfg.vocab_size, cfg.n_ctx)


class Params(Mapping):
    """name -> float32 array, produced on demand by `load(name)` and optionally kept."""

    def __init__(self, shapes: Callable[[], dict[str, tuple[int, ...]]], load: Callable[[str], np.ndarray],
                 keep: bool) -> None:
        self._shapes_of = shapes  # called on first use: a model too big to build is refused before that
        self._shapes: dict[str, tuple[int, ...]] | None = None
        self._load = load
        self._keep = keep
        self._cache: dict[str, np.ndarray] = {}

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        if self._shapes is None:
            self._shapes = self._shapes_of()
        return self._shapes

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self._cache:
            return self._cache[name]
        if name not in self.shapes:
            raise KeyError(name)
        raw = self._load(name)
        if np.asarray(raw).dtype.kind != "f":  # integer or boolean weights are not a GPT-2 checkpoint
            raise XlgptError(f"tensor {hf_key(name)} holds {np.asarray(raw).dtype} values, not floating point")
        a = np.ascontiguousarray(raw, dtype=np.float32)
        if a.shape != self.shapes[name]:
            raise XlgptError(f"tensor {hf_key(name)} has shape {tuple(a.shape)}, expected {self.shapes[name]}")
        # NaN or inf make the (float64) sum non-finite; a finite sum needs no element-wise check
        if not np.isfinite(a.sum(dtype=np.float64)) and not np.all(np.isfinite(a)):
            raise XlgptError(f"tensor {hf_key(name)} contains NaN or infinity")
        if self._keep:
            self._cache[name] = a
        return a

    def __iter__(self) -> Iterator[str]:
        return iter(self.shapes)

    def __len__(self) -> int:
        return len(self.shapes)


@dataclass
class Model:
    name: str
    config: GPT2Config
    params: Params
    tokenizer: Tokenizer
    source: str = ""


# ---- built-in models ------------------------------------------------------------------------------
def _seed(seed: int, name: str) -> np.random.Generator:
    # per-tensor streams: the same tensor whatever order tensors are asked for
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def random_params(cfg: GPT2Config, seed: int, std: float, keep: bool) -> Params:
    def load(name: str) -> np.ndarray:
        rng = _seed(seed, name)
        shape = shape_of(cfg, name)
        if name.endswith(("ln_1_w", "ln_2_w")) or name == "ln_f_w":
            return (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        if len(shape) == 1:
            return (0.5 * std * rng.standard_normal(shape)).astype(np.float32)
        a = rng.standard_normal(shape, dtype=np.float32)
        a *= np.float32(std)  # in place: a second 150 MB array for wte costs page faults, not just memory
        return a

    return Params(lambda: param_shapes(cfg), load, keep)


TINY_DEFAULTS = dict(layers=2, heads=2, embd=16, merges=64, ctx=32, seed=0)


def tiny_model(spec: str) -> Model:
    opts = dict(TINY_DEFAULTS)
    if ":" in spec:
        for part in spec.split(":", 1)[1].split(","):
            key, _, value = part.partition("=")
            if key not in opts or not value.strip().lstrip("-").isdigit():
                raise XlgptError(f"bad tiny model option {part!r}; use e.g. tiny:layers=2,heads=2,embd=16,merges=64,ctx=32,seed=0")
            opts[key] = int(value)
    if min(opts.values()) < 0 or min(opts["layers"], opts["heads"], opts["embd"], opts["ctx"]) < 1 \
            or opts["embd"] % opts["heads"]:
        raise XlgptError("tiny model: embd must be a positive multiple of heads, and layers, heads, ctx at least 1")
    tok = Tokenizer.gpt2().cut(opts["merges"])
    cfg = GPT2Config(opts["layers"], opts["heads"], opts["embd"], opts["ctx"], tok.vocab_size)
    params = random_params(cfg, opts["seed"], std=1.0 / np.sqrt(opts["embd"]), keep=True)
    name = "tiny" if spec == "tiny" else spec
    return Model(name, cfg, params, tok, source=f"built-in random model ({name})")


def random_model(spec: str) -> Model:
    base = spec.split(":", 1)[1]
    if base not in KNOWN_CONFIGS:
        raise XlgptError(f"unknown shape {base!r} for random:; known: {', '.join(KNOWN_CONFIGS)}")
    tok = Tokenizer.gpt2()
    cfg = GPT2Config(vocab_size=tok.vocab_size, **KNOWN_CONFIGS[base])
    return Model(spec, cfg, random_params(cfg, seed=0, std=0.02, keep=False), tok,
                 source=f"seeded random weights with {base}'s shapes")


# ---- Hugging Face folders ---------------------------------------------------------------------------
def load_folder(folder: Path, name: str | None = None) -> Model:
    folder = Path(folder)
    if folder.is_file():
        raise XlgptError(f"--model {folder} is a file; give a model folder (with {', '.join(HF_FILES)}), "
                         "toy, tiny, random:gpt2 or a hub id")
    if not folder.is_dir():
        raise XlgptError(f"model folder {folder} does not exist")
    missing = [f for f in HF_FILES if not (folder / f).is_file()]
    if "model.safetensors" in missing and any((folder / f).exists() for f in ("pytorch_model.bin", "model.pt", "model.bin")):
        raise XlgptError(f"{folder} has only pickled weights (pytorch_model.bin); xlgpt loads model.safetensors only "
                         "and never unpickles. Convert it, e.g. with transformers: model.save_pretrained(dir, safe_serialization=True)")
    if missing:
        raise XlgptError(f"{folder} is not a GPT-2 model folder: missing {', '.join(missing)}")
    try:
        hf = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        cfg = GPT2Config(
            n_layer=_whole(hf["n_layer"]), n_head=_whole(hf["n_head"]), n_embd=_whole(hf["n_embd"]),
            n_ctx=_whole(hf.get("n_positions", hf.get("n_ctx"))), vocab_size=_whole(hf["vocab_size"]),
            layer_norm_epsilon=float(hf.get("layer_norm_epsilon", 1e-5)),
        )
    except XlgptError as e:
        raise XlgptError(f"{folder}/config.json: {e}") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, OverflowError) as e:
        raise XlgptError(f"{folder}/config.json is not a GPT-2 config: {type(e).__name__} {e}") from None
    if hf.get("model_type", "gpt2") != "gpt2":
        raise XlgptError(f"{folder}: model_type {hf.get('model_type')!r} is not gpt2")
    if hf.get("activation_function", "gelu_new") not in TANH_GELU:
        raise XlgptError(f"{folder}: activation {hf.get('activation_function')!r} is not GPT-2's tanh GELU")
    tok = Tokenizer.from_files(folder / "vocab.json", folder / "merges.txt", name=name or folder.name)
    if tok.vocab_size != cfg.vocab_size:
        raise XlgptError(f"{folder}: vocab.json has {tok.vocab_size} tokens but config.json says {cfg.vocab_size}")
    params = _safetensors_params(folder / "model.safetensors", cfg)
    return Model(name or folder.name, cfg, params, tok, source=str(folder))


def _whole(v) -> int:
    """A config count: a whole number (1.0 is 1; 1.5, "2" or true are not)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v):
        raise ValueError(f"{v!r} is not a whole number")
    return int(v)


FLOAT_DTYPES = {"F16", "F32", "F64"}


def _safetensors_params(path: Path, cfg: GPT2Config) -> Params:
    try:
        from safetensors import safe_open

        handle = safe_open(str(path), framework="np")
        keys = set(handle.keys())
    except Exception as e:  # safetensors raises several types for corrupt files
        raise XlgptError(f"cannot read {path}: {e}".splitlines()[0]) from e
    prefix = "transformer." if any(k.startswith("transformer.") for k in keys) else ""
    # the layers the checkpoint holds, before anything is sized by the config's n_layer
    layers = {int(m.group(1)) for k in keys if (m := re.match(re.escape(prefix) + r"h\.(\d+)\.", k))}
    held = max(layers) + 1 if layers else 0
    if held != cfg.n_layer:
        raise XlgptError(f"{path.parent}/config.json says n_layer {cfg.n_layer} but {path.name} holds {held} layers")
    shapes = param_shapes(cfg)
    absent = [prefix + hf_key(n) for n in shapes if prefix + hf_key(n) not in keys]
    if absent:
        raise XlgptError(f"{path} lacks tensors {', '.join(absent[:3])}{' ...' if len(absent) > 3 else ''}")
    for key in [prefix + hf_key(n) for n in shapes] + [k for k in ("lm_head.weight",) if k in keys]:
        dtype = handle.get_slice(key).get_dtype()
        if dtype not in FLOAT_DTYPES:  # integer or boolean weights would silently become floats
            raise XlgptError(f"{path}: tensor {key} holds {dtype} values; xlgpt reads float16/32/64 weights only")

    def load(name: str) -> np.ndarray:
        try:
            return handle.get_tensor(prefix + hf_key(name))
        except Exception as e:
            raise XlgptError(f"cannot read tensor {hf_key(name)} from {path}: {e}".splitlines()[0]) from e

    keep = cfg.n_params < SMALL_MODEL
    params = Params(lambda: shapes, load, keep)
    for name, shape in shapes.items():  # check shapes from the header without reading data
        got = tuple(handle.get_slice(prefix + hf_key(name)).get_shape())
        if got != shape:
            raise XlgptError(f"{path}: tensor {hf_key(name)} has shape {got}, expected {shape}")
    if "lm_head.weight" in keys:  # untied head: the workbook computes logits with wte, so it must be wte
        try:
            head = handle.get_tensor("lm_head.weight")
        except Exception as e:
            raise XlgptError(f"cannot read tensor lm_head.weight from {path}: {e}".splitlines()[0]) from e
        if head.shape != shapes["wte"] or not np.array_equal(head.astype(np.float32), params["wte"]):
            raise XlgptError(f"{path}: lm_head.weight differs from wte (an untied LM head); the workbook's LM head "
                             "is wte, so it would compute another model than this checkpoint")
    return params


def download(repo_id: str) -> Path:
    """Fetch the four files from the hub (or its cache). Offline and uncached: a clear XlgptError."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:  # pragma: no cover
        raise XlgptError("huggingface_hub is needed to download models: pip install huggingface_hub") from e
    try:
        return Path(snapshot_download(repo_id, allow_patterns=list(HF_FILES), local_files_only=True))
    except Exception:
        pass
    try:
        path = Path(snapshot_download(repo_id, allow_patterns=list(HF_FILES), etag_timeout=10))
    except Exception as e:
        reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise XlgptError(
            f"cannot download {repo_id!r} from the Hugging Face hub ({reason}). Offline? Pass a local folder instead: "
            f"--model PATH with {', '.join(HF_FILES)}"
        ) from e
    return path


def load_model(spec: str | None = None) -> Model:
    spec = spec or DEFAULT_MODEL
    if spec == "tiny" or spec.startswith("tiny:"):
        return tiny_model(spec)
    if spec.startswith("random:"):
        return random_model(spec)
    if (PACKAGE_MODELS / spec).is_dir() and "/" not in spec:
        model = load_folder(PACKAGE_MODELS / spec, name=spec)
        # where it came from, the same wherever xlgpt is installed (the workbook states it)
        return replace(model, source=f"built into xlgpt (xlgpt/models/{spec}, trained by python -m xlgpt.train)")
    path = Path(spec).expanduser()
    if path.exists() or spec.startswith((".", "/", "~")):
        return load_folder(path)
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", spec):
        raise XlgptError(f"--model {spec!r} is neither a folder nor a hub id")
    folder = download(spec)
    return load_folder(folder, name=spec)


def save_folder(model: Model, folder) -> Path:
    """Write a model in the Hugging Face layout (config.json, model.safetensors, vocab.json, merges.txt)."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(model.config.to_hf(), indent=2) + "\n", encoding="utf-8")
    save_file({hf_key(n): np.ascontiguousarray(model.params[n], dtype=np.float32) for n in model.params},
              str(folder / "model.safetensors"), metadata={"format": "pt"})
    model.tokenizer.save(folder)
    return folder
