"""Where a steering vector comes from: a .npy file, an activation difference, or a sparse-autoencoder feature.

    --steer-vector FILE.npy               any 1-D vector of n_embd values (loaded with allow_pickle=False)
    --steer-diff PLUS MINUS --steer-layer L
                                          resid_pre(PLUS) - resid_pre(MINUS) entering block L, from the NumPy reference
                                          on the same model: at the last position, or (--steer-mean) each prompt's mean
                                          over its positions
    --steer-sae RELEASE:LAYER:FEATURE     row FEATURE of the decoder W_dec [d_sae, d_in] of the SAE trained on
                                          blocks.LAYER.hook_resid_pre (SAELens layout: RELEASE/blocks.LAYER.hook_resid_pre/
                                          {cfg.json, sae_weights.safetensors}); RELEASE is gpt2-small-res-jb (downloaded
                                          from jbloom/GPT2-Small-SAEs-Reformatted), a hub repo id, or a local folder

Default coefficient when --steer-coef is not given (see DEFAULT_COEF_REASON):
  * a .npy vector or an activation difference: 1, the vector exactly as given / as measured. An activation
    difference already lives on the residual stream's own scale (coefficient 1 moves the stream by exactly the
    difference between the two prompts' activations).
  * an SAE feature: a decoder row is a direction (SAELens normalises them to about unit length) with no scale of
    its own, so the default makes the added vector as long as the unsteered residual stream it is added to:
    coef = |resid_pre entering block L at the prompt's last token| / |W_dec[feature]|, from the NumPy reference
    (rounded to 3 significant digits). It adapts to any model size; for GPT-2 small it is of the same order as
    the ~100 used in the SAELens steering tutorial.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from .errors import XlgptError
from .model import Model, load_model
from .stages.options import Steering

SAE_RELEASES = {  # SAELens release -> (hub repo, folder per layer, d_in)
    "gpt2-small-res-jb": ("jbloom/GPT2-Small-SAEs-Reformatted", "blocks.{layer}.hook_resid_pre", 768),
}
SAE_FOLDER = "blocks.{layer}.hook_resid_pre"
SAE_FILES = ("cfg.json", "sae_weights.safetensors")

DEFAULT_COEF_REASON = {
    "vector": "1: the vector exactly as given",
    "diff": "1: the measured activation difference exactly (it is already on the residual stream's scale)",
    "sae": "|resid_pre at the last token| / |W_dec row|: the added vector is as long as the residual stream "
           "it joins (a decoder row is a direction without a scale of its own)",
}


def steering_from_args(args, model_spec: str | None) -> Steering:
    """The Steering a build asks for (argparse namespace of `xlgpt build`)."""
    model = load_model(model_spec)
    cfg = model.config
    positions = int(getattr(args, "steer_positions", 0) or 0)
    if positions < 0:
        raise XlgptError(f"--steer-positions must be 0 (all) or a positive count, not {positions}")
    layer = getattr(args, "steer_layer", None)
    bos = bool(getattr(args, "bos", False))
    if getattr(args, "steer_vector", None):
        kind = "vector"
        layer = _require_layer(layer, cfg.n_layer, "--steer-vector")
        vector = load_vector(args.steer_vector, cfg.n_embd)
        source = f"vector from {args.steer_vector}"
    elif getattr(args, "steer_diff", None):
        kind = "diff"
        layer = _require_layer(layer, cfg.n_layer, "--steer-diff")
        plus, minus = args.steer_diff
        mean = bool(getattr(args, "steer_mean", False))
        vector = activation_diff(model, plus, minus, layer, mean=mean, bos=bos)
        where = ("each prompt's mean over its positions" + (" (BOS excluded)" if bos else "")) if mean else "at the last position"
        source = (f"activation difference resid_pre({plus!r}) - resid_pre({minus!r}) entering block {layer}, "
                  f"{where}{', with BOS' if bos else ''}; NumPy reference on {model.name}")
    elif getattr(args, "steer_sae", None):
        kind = "sae"
        release, sae_layer, feature = parse_sae_spec(args.steer_sae)
        if not 0 <= sae_layer < cfg.n_layer:
            raise XlgptError(f"--steer-sae layer {sae_layer} is outside this model's blocks 0..{cfg.n_layer - 1}")
        vector, where = sae_decoder_row(release, sae_layer, feature, cfg.n_embd)
        if layer is None:
            layer = sae_layer
        layer = _require_layer(layer, cfg.n_layer, "--steer-sae")
        source = f"SAE feature {feature}: row {feature} of W_dec from {where}"
        if layer != sae_layer:
            source += f" (trained on blocks.{sae_layer}.hook_resid_pre, added at block {layer} as asked)"
    else:
        raise XlgptError("steering needs a vector: --steer-vector, --steer-diff or --steer-sae")

    coef = getattr(args, "steer_coef", None)
    if coef is not None:
        coef = float(coef)
        if not math.isfinite(coef):
            raise XlgptError(f"--steer-coef must be a finite number, not {coef}")
        reason = "given with --steer-coef"
    elif kind == "sae":
        prompt = args.prompt if getattr(args, "prompt", None) is not None else _default_prompt()
        coef = norm_matched_coef(model, prompt, layer, vector, bos)
        reason = f"default {DEFAULT_COEF_REASON[kind]}"
    else:
        coef = 1.0
        reason = f"default {DEFAULT_COEF_REASON[kind]}"
    return Steering(layer=layer, coef=coef, vector=vector, on=True, positions=positions, source=source,
                    coef_reason=reason)


def _default_prompt() -> str:
    from .stages.options import BuildOptions

    return BuildOptions().prompt


def _require_layer(layer, n_layer: int, flag: str) -> int:
    if layer is None:
        raise XlgptError(f"{flag} needs --steer-layer L: the block (0..{n_layer - 1}) whose input the vector is added to")
    layer = int(layer)
    if not 0 <= layer < n_layer:
        raise XlgptError(f"--steer-layer {layer} is outside this model's blocks 0..{n_layer - 1}")
    return layer


# ---- a vector from a file ------------------------------------------------------------------------------
def load_vector(path, n_embd: int) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise XlgptError(f"--steer-vector: no such file {path}")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except OSError as e:
        raise XlgptError(f"--steer-vector: cannot read {path} ({e.strerror or e})") from None
    if magic.startswith(b"PK"):
        raise XlgptError(f"--steer-vector: {path} is an .npz archive; give one .npy vector (numpy.save)")
    if magic != b"\x93NUMPY":
        raise XlgptError(f"--steer-vector: {path} is not a .npy file (write one with numpy.save)")
    try:
        a = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise XlgptError(f"--steer-vector: {path} holds Python objects that need unpickling, which xlgpt never does; "
                             "save a plain float array with numpy.save") from None
        raise XlgptError(f"--steer-vector: {path} is not a .npy array ({str(e).splitlines()[0]})") from None
    except (OSError, EOFError) as e:
        raise XlgptError(f"--steer-vector: cannot read {path} as a .npy array ({str(e).splitlines()[0] or type(e).__name__})") from None
    if not isinstance(a, np.ndarray):  # an .npz archive
        if hasattr(a, "close"):
            a.close()
        raise XlgptError(f"--steer-vector: {path} is an .npz archive; give one .npy vector")
    if a.ndim != 1 or a.shape[0] != n_embd:
        raise XlgptError(f"--steer-vector: {path} has shape {tuple(a.shape)}; this model needs a 1-D vector of "
                         f"n_embd = {n_embd} values")
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise XlgptError(f"--steer-vector: {path} holds {a.dtype} values, not real numbers")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise XlgptError(f"--steer-vector: {path} contains NaN or infinity")
    return a


# ---- an activation difference --------------------------------------------------------------------------
def resid_pre(model: Model, text: str, layer: int, bos: bool = False) -> np.ndarray:
    """The residual stream entering block `layer` for a prompt, [n, C] (NumPy reference, unsteered)."""
    from .contract import T
    from .reference import gpt2
    from .stages import encode

    t = gpt2(encode(model, text, bos, what=f"the steering prompt {text!r}"), model.params, model.config)
    return t[T.block_resid_pre(layer)]


def activation_diff(model: Model, plus: str, minus: str, layer: int, mean: bool = False, bos: bool = False) -> np.ndarray:
    """resid_pre(plus) - resid_pre(minus) entering `layer`: at the last position, or each prompt's mean over its
    positions (without the BOS position, which is the same for both prompts)."""
    a, b = resid_pre(model, plus, layer, bos), resid_pre(model, minus, layer, bos)
    if mean:
        skip = 1 if bos else 0
        a = a[skip:] if len(a) > skip else a
        b = b[skip:] if len(b) > skip else b
        return a.mean(axis=0) - b.mean(axis=0)
    return a[-1] - b[-1]


def norm_matched_coef(model: Model, prompt: str, layer: int, vector: np.ndarray, bos: bool = False) -> float:
    """|resid_pre entering `layer` at the prompt's last token| / |vector|, to 3 significant digits."""
    norm_v = float(np.linalg.norm(vector))
    if norm_v == 0:
        return 0.0
    x = resid_pre(model, prompt, layer, bos)[-1]
    c = float(np.linalg.norm(x)) / norm_v
    return float(f"{c:.3g}") if c > 0 else 0.0


# ---- a sparse-autoencoder feature ----------------------------------------------------------------------
def parse_sae_spec(spec: str) -> tuple[str, int, int]:
    parts = spec.rsplit(":", 2)
    if len(parts) != 3 or not parts[0] or not re.fullmatch(r"\d+", parts[1].strip()) or not re.fullmatch(r"\d+", parts[2].strip()):
        raise XlgptError(f"--steer-sae wants RELEASE:LAYER:FEATURE, e.g. gpt2-small-res-jb:2:7650, not {spec!r}")
    return parts[0], int(parts[1]), int(parts[2])


def sae_folder(release: str, layer: int, n_embd: int | None = None) -> tuple[Path, str]:
    """The folder holding cfg.json and sae_weights.safetensors for `layer`, and a description of where it is."""
    sub = SAE_FOLDER.format(layer=layer)
    local = Path(release).expanduser()
    if local.is_dir():
        folder = local / sub
        if not folder.is_dir():
            raise XlgptError(f"--steer-sae: {local} has no folder {sub} (SAELens layout: "
                             f"RELEASE/{sub}/{{{', '.join(SAE_FILES)}}})")
        return folder, str(folder)
    if release.startswith((".", "/", "~")):
        raise XlgptError(f"--steer-sae: no such folder {release}")
    if release in SAE_RELEASES:
        repo, pattern, d_in = SAE_RELEASES[release]
        sub = pattern.format(layer=layer)
        if n_embd is not None and d_in != n_embd:  # say so before downloading 150 MB
            raise XlgptError(f"--steer-sae: {release} reads {d_in}-dimensional residual streams (GPT-2 small) but this "
                             f"model's n_embd is {n_embd}")
    elif re.fullmatch(r"[\w.-]+/[\w.-]+", release):
        repo = release
    else:
        raise XlgptError(f"--steer-sae: unknown release {release!r}; use {', '.join(SAE_RELEASES)}, a hub repo id "
                         "(owner/name) or a local folder in the SAELens layout")
    return _download(repo, sub, release), f"{release} ({repo}/{sub})"


def _download(repo: str, sub: str, release: str) -> Path:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover
        raise XlgptError("huggingface_hub is needed to download SAEs: pip install huggingface_hub") from None
    def offline(reason: str) -> XlgptError:
        return XlgptError(
            f"cannot download the SAE {release}:{sub} from the Hugging Face hub ({repo}: {reason}). Offline? "
            f"Pass a local folder in the SAELens layout: --steer-sae FOLDER:LAYER:FEATURE with "
            f"FOLDER/{sub}/{{{', '.join(SAE_FILES)}}}")

    paths = []
    for name in SAE_FILES:
        try:
            paths.append(Path(hf_hub_download(repo, f"{sub}/{name}", local_files_only=True)))
            continue
        except Exception:
            pass
        unreachable = _hub_unreachable()
        if unreachable:
            raise offline(unreachable)
        hub_log = logging.getLogger("huggingface_hub")
        level = hub_log.level
        hub_log.setLevel(logging.ERROR)  # no "Retrying in 1s" lines: one line of error, below, is enough
        try:
            paths.append(Path(hf_hub_download(repo, f"{sub}/{name}", etag_timeout=10)))
        except Exception as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise offline(reason.split(". ")[0][:160]) from None
        finally:
            hub_log.setLevel(level)
    return paths[0].parent


def _hub_unreachable() -> str:
    """Why the hub cannot be reached ("" if it may be): offline mode, or no route to its host. Behind a proxy
    the check is left to huggingface_hub."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return ""
    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except OSError as e:
        return f"{host} is unreachable: {e.strerror or e}"
    return ""


def sae_decoder_row(release: str, layer: int, feature: int, n_embd: int) -> tuple[np.ndarray, str]:
    """Row `feature` of W_dec [d_sae, d_in] (read alone, without loading the whole matrix) and where it came from."""
    folder, where = sae_folder(release, layer, n_embd)
    cfg_path, weights = folder / SAE_FILES[0], folder / SAE_FILES[1]
    if not weights.is_file():
        raise XlgptError(f"--steer-sae: {folder} has no {SAE_FILES[1]}")
    cfg = {}
    if cfg_path.is_file():
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise XlgptError(f"--steer-sae: {cfg_path} is not JSON ({e})") from None
    hook = cfg.get("hook_name") or cfg.get("hook_point")
    if hook and not str(hook).endswith("hook_resid_pre"):
        raise XlgptError(f"--steer-sae: the SAE in {folder} reads {hook}, not a hook_resid_pre residual stream")
    try:
        from safetensors import safe_open

        with safe_open(str(weights), framework="np") as f:
            if "W_dec" not in f.keys():
                raise XlgptError(f"--steer-sae: {weights} has no W_dec tensor (has {', '.join(sorted(f.keys()))})")
            sl = f.get_slice("W_dec")
            shape = tuple(sl.get_shape())
            if len(shape) != 2:
                raise XlgptError(f"--steer-sae: W_dec in {weights} has shape {shape}, expected [d_sae, d_in]")
            d_sae, d_in = shape
            if d_in != n_embd:
                raise XlgptError(f"--steer-sae: the SAE's W_dec has d_in {d_in} but this model's n_embd is {n_embd}")
            if cfg.get("d_in") not in (None, d_in):
                raise XlgptError(f"--steer-sae: cfg.json says d_in {cfg['d_in']} but W_dec has {d_in}")
            if not 0 <= feature < d_sae:
                raise XlgptError(f"--steer-sae: feature {feature} is out of range: the SAE has {d_sae} features (0..{d_sae - 1})")
            row = np.asarray(sl[feature:feature + 1], dtype=np.float64).reshape(-1)
    except XlgptError:
        raise
    except Exception as e:  # safetensors raises several types for corrupt files
        raise XlgptError(f"--steer-sae: cannot read {weights}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not np.all(np.isfinite(row)):
        raise XlgptError(f"--steer-sae: W_dec[{feature}] in {weights} contains NaN or infinity")
    return row, where
