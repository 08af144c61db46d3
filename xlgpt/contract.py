"""Every tensor of the workbook in one place: its defined name, shape, tab and kind (after llm.c's
ParameterTensors / ActivationTensors).

The reference returns its intermediates under these names, the stages define the workbook's names from them
(no stage types a name), and verify walks them. Dimensions:

    N  context (tokens the workbook holds)      C  n_embd        H  n_head       D  C / H      F  4C     Q  3C
    V  vocabulary                               L  n_layer       P  L + 1 lens layers          K  top-k shown
    T  n_ctx (wpe rows)                         X  prompt characters the sheet reads (max_chars)
    B  4X prompt bytes      G  merges           S  pair-hash slots          U  Unicode class ranges
    1  one

Kinds: number (compared within the tolerance), id (an integer, exactly), text and bool (exactly); an input is
a constant the learner may change (verify reads it, never compares it).
"""
from __future__ import annotations

from dataclasses import dataclass

NUMBER, ID, TEXT, BOOL = "number", "id", "text", "bool"


@dataclass(frozen=True)
class Tensor:
    template: str  # "block_{l}_ln_1"
    shape: tuple[str, str]  # ("N", "C")
    tab: str  # "block_{l}"
    kind: str
    group: str  # "param", "config", "input", "tokenizer", "model", "python_tokens"
    hf: str = ""  # the Hugging Face checkpoint key of a parameter

    def __call__(self, l: int | None = None, h: int | None = None) -> str:  # noqa: E741
        return self.template.format(l=l, h=h)

    @property
    def per_layer(self) -> bool:
        return "{l}" in self.template

    @property
    def per_head(self) -> bool:
        return "{h}" in self.template

    def dims(self, d: dict[str, int]) -> tuple[int, int]:
        return tuple(d[s] if not s.isdigit() else int(s) for s in self.shape)  # type: ignore[return-value]


#  name                   shape   tab            kind     group      (hf key)
_TABLE = """
wte                       V C     wte            number   param      wte.weight
vocab_ids                 V 1     wte            id       param
wpe                       T C     wpe            number   param      wpe.weight
wpe_positions             T 1     wpe            id       param
h{l}_ln_1_w               1 C     h{l}           number   param      h.{l}.ln_1.weight
h{l}_ln_1_b               1 C     h{l}           number   param      h.{l}.ln_1.bias
h{l}_attn_c_attn_w        C Q     h{l}           number   param      h.{l}.attn.c_attn.weight
h{l}_attn_c_attn_b        1 Q     h{l}           number   param      h.{l}.attn.c_attn.bias
h{l}_attn_c_proj_w        C C     h{l}           number   param      h.{l}.attn.c_proj.weight
h{l}_attn_c_proj_b        1 C     h{l}           number   param      h.{l}.attn.c_proj.bias
h{l}_ln_2_w               1 C     h{l}           number   param      h.{l}.ln_2.weight
h{l}_ln_2_b               1 C     h{l}           number   param      h.{l}.ln_2.bias
h{l}_mlp_c_fc_w           C F     h{l}           number   param      h.{l}.mlp.c_fc.weight
h{l}_mlp_c_fc_b           1 F     h{l}           number   param      h.{l}.mlp.c_fc.bias
h{l}_mlp_c_proj_w         F C     h{l}           number   param      h.{l}.mlp.c_proj.weight
h{l}_mlp_c_proj_b         1 C     h{l}           number   param      h.{l}.mlp.c_proj.bias
ln_f_w                    1 C     ln_f_params    number   param      ln_f.weight
ln_f_b                    1 C     ln_f_params    number   param      ln_f.bias
vocab_token               V 1     vocab          text     param
vocab_text                V 1     vocab          text     param

model_name                1 1     start          text     config
model_source              1 1     start          text     config
n_layer                   1 1     start          id       config
n_head                    1 1     start          id       config
n_embd                    1 1     start          id       config
vocab_size                1 1     start          id       config
n_ctx                     1 1     start          id       config
layer_norm_epsilon        1 1     start          number   config
show_top                  1 1     start          id       config
max_chars                 1 1     start          id       config
max_word_bytes            1 1     start          id       config

prompt                    1 1     prompt         text     input
bos                       1 1     prompt         bool     input
context                   1 1     prompt         id       config
status                    1 1     prompt         text     model

merges_left               G 1     merges         id       tokenizer
merges_right              G 1     merges         id       tokenizer
merges_id                 G 1     merges         id       tokenizer
pairs_key                 S 1     merges         id       tokenizer
pairs_rank                S 1     merges         id       tokenizer
unicode_start             U 1     unicode        id       tokenizer
unicode_class             U 1     unicode        id       tokenizer
unicode_table             U 2     unicode        id       tokenizer
byte_token_id             256 1   bytes          id       tokenizer
bytes_table               256 5   bytes          id       tokenizer
prompt_units              1 1     chars          id       tokenizer
n_chars                   1 1     chars          id       tokenizer
n_bytes                   1 1     chars          id       tokenizer
chars_cp                  X 1     chars          id       tokenizer
chars_class               X 1     chars          id       tokenizer
chars_nb                  X 1     chars          id       tokenizer
chars_boff                X 1     chars          id       tokenizer
chars_unit                X 1     chars          id       tokenizer
chars_bytes               X 4     chars          id       tokenizer
prompt_bytes              B 1     chars          id       tokenizer
pretok_start              N 1     pretokens      id       tokenizer
pretok_len                N 1     pretokens      id       tokenizer
pretok_boff               N 1     pretokens      id       tokenizer
pretok_blen               N 1     pretokens      id       tokenizer
pretok_text               N 1     pretokens      text     tokenizer
bpe_final                 N N     bpe            id       tokenizer
bpe_len                   N 1     bpe            id       tokenizer

tokens_input              N 1     tokens         id       python_tokens
n_tokens                  1 1     tokens         id       model
positions                 N 1     tokens         id       model
tokens_ids                N 1     tokens         id       model
tokens_text               N 1     tokens         text     model

embeddings_wte            N C     embeddings     number   model
embeddings_wpe            N C     embeddings     number   model
embeddings_out            N C     embeddings     number   model
block_{l}_resid_pre       N C     block_{l}      number   model
block_{l}_ln_1_mean       N 1     block_{l}      number   model
block_{l}_ln_1_var        N 1     block_{l}      number   model
block_{l}_ln_1            N C     block_{l}      number   model
block_{l}_qkv             N Q     block_{l}      number   model
block_{l}_q               N C     block_{l}      number   model
block_{l}_k               N C     block_{l}      number   model
block_{l}_v               N C     block_{l}      number   model
block_{l}_q_h{h}          N D     block_{l}      number   model
block_{l}_k_h{h}          N D     block_{l}      number   model
block_{l}_v_h{h}          N D     block_{l}      number   model
block_{l}_scores_h{h}     N N     block_{l}      number   model
block_{l}_attn_max_h{h}   1 1     block_{l}      number   model
block_{l}_attn_sum_h{h}   N 1     block_{l}      number   model
block_{l}_attn_h{h}       N N     block_{l}      number   model
block_{l}_z_h{h}          N D     block_{l}      number   model
block_{l}_z               N C     block_{l}      number   model
block_{l}_attn_out        N C     block_{l}      number   model
block_{l}_resid_mid       N C     block_{l}      number   model
block_{l}_ln_2_mean       N 1     block_{l}      number   model
block_{l}_ln_2_var        N 1     block_{l}      number   model
block_{l}_ln_2            N C     block_{l}      number   model
block_{l}_mlp_fc          N F     block_{l}      number   model
block_{l}_mlp_gelu        N F     block_{l}      number   model
block_{l}_mlp_out         N C     block_{l}      number   model
block_{l}_resid_post      N C     block_{l}      number   model
ln_f_mean                 N 1     ln_f           number   model
ln_f_var                  N 1     ln_f           number   model
ln_f                      N C     ln_f           number   model
lm_head_x                 1 C     lm_head        number   model
lm_head_max               1 1     lm_head        number   model
lm_head_sum               1 1     lm_head        number   model
lm_head_logits            V 1     lm_head        number   model
prediction_probs          V 1     lm_head        number   model
sample_w                  V 1     lm_head        number   model
next_token_id             1 1     prediction     id       model
next_token                1 1     prediction     text     model
top_logits                K 1     prediction     number   model
top_ids                   K 1     prediction     id       model
top_probs                 K 1     prediction     number   model
top_tokens                K 1     prediction     text     model
temperature               1 1     prediction     number   input
sample_top_k              1 1     prediction     id       input
sample_u                  1 1     prediction     number   input
sample_t                  1 1     prediction     number   model
sample_k                  1 1     prediction     id       model
sample_max                1 1     prediction     number   model
sample_kth                1 1     prediction     number   model
sample_above              1 1     prediction     id       model
sample_cut_id             1 1     prediction     id       model
sample_total              1 1     prediction     number   model
sample_threshold          1 1     prediction     number   model
sampled_token_id          1 1     prediction     id       model
sampled_token             1 1     prediction     text     model
sampled_prob              1 1     prediction     number   model
lens_target               1 1     logit_lens     id       input
lens_target_logit         1 P     logit_lens     number   model
lens_target_rank          1 P     logit_lens     id       model
lens_target_prob          1 P     logit_lens     number   model
lens_top_tokens           K P     logit_lens     text     model
lens_top_probs            K P     logit_lens     number   model
lens_top_ids              K P     logit_lens     id       model
lens_top_logits           K P     logit_lens     number   model
lens_x                    P C     logit_lens     number   model
lens_ln_mean              P 1     logit_lens     number   model
lens_ln_var               P 1     logit_lens     number   model
lens_ln                   P C     logit_lens     number   model
lens_max                  1 P     logit_lens     number   model
lens_sum                  1 P     logit_lens     number   model
lens_logits               V P     logit_lens     number   model
lens_probs                V P     logit_lens     number   model
attention_{l}_h{h}        N N     attention      number   model
steer_on                  1 1     steer          bool     input
steer_layer               1 1     steer          id       input
steer_coef                1 1     steer          number   input
steer_positions           1 1     steer          id       input
steer_vector              1 C     steer          number   input
steer_mask                N 1     steer          id       model
steer_add                 N C     steer          number   model
"""


def _parse(text: str) -> dict[str, Tensor]:
    out = {}
    for line in text.strip().splitlines():
        if not line.strip():
            continue
        name, r, c, tab, kind, group, *hf = line.split()
        key = name.replace("{l}", "").replace("{h}", "").replace("__", "_").strip("_")
        out[key] = Tensor(name, (r, c), tab, kind, group, hf[0] if hf else "")
    return out


TENSORS: dict[str, Tensor] = _parse(_TABLE)


class _Names:
    """Attribute access to the table: T.block_ln_1(3) == "block_3_ln_1", T.wte() == "wte"."""

    def __getattr__(self, key: str) -> Tensor:
        try:
            return TENSORS[key]
        except KeyError:
            raise AttributeError(f"the contract has no tensor {key!r}") from None


T = _Names()

PARAMETERS = {k: t for k, t in TENSORS.items() if t.hf}


def dims(n_layer: int, n_head: int, n_embd: int, vocab_size: int, n_ctx: int, context: int = 1, top_k: int = 1,
         max_chars: int = 0, n_merges: int = 0, n_pairs: int = 0, n_ranges: int = 0) -> dict[str, int]:
    return {"N": context, "C": n_embd, "H": n_head, "D": n_embd // max(n_head, 1), "F": 4 * n_embd,
            "Q": 3 * n_embd, "V": vocab_size, "L": n_layer, "P": n_layer + 1, "K": top_k, "T": n_ctx,
            "X": max_chars, "B": 4 * max_chars, "G": n_merges, "S": n_pairs, "U": n_ranges}


def expand(n_layer: int, n_head: int, groups=None) -> dict[str, Tensor]:
    """name -> Tensor for every concrete name (optionally of some groups only): table order, and a run of
    per-layer tensors layer by layer (h0_*, then h1_*, ...), as the workbook lays them out."""
    chosen = [t for t in TENSORS.values() if groups is None or t.group in groups]
    out: dict[str, Tensor] = {}
    i = 0
    while i < len(chosen):
        j = i
        while j < len(chosen) and chosen[j].per_layer == chosen[i].per_layer and chosen[j].tab == chosen[i].tab:
            j += 1
        run = chosen[i:j]
        for l in (range(n_layer) if run[0].per_layer else [None]):  # noqa: E741
            for t in run:
                for h in (range(n_head) if t.per_head else [None]):
                    out[t(l, h)] = t
        i = j
    return out


def param_shapes(n_layer: int, n_embd: int, vocab_size: int, n_ctx: int) -> dict[str, tuple[int, ...]]:
    """Every weight tensor in checkpoint shape (biases and gains 1-D), in the order the workbook lays them out."""
    d = dims(n_layer, 1, n_embd, vocab_size, n_ctx)
    out = {}
    for name, t in expand(n_layer, 1, ["param"]).items():
        if not t.hf:
            continue
        r, c = t.dims(d)
        out[name] = (c,) if t.shape[0] == "1" else (r, c)
    return out


def param_shape(name: str, n_layer: int, n_embd: int, vocab_size: int, n_ctx: int) -> tuple[int, ...]:
    """One weight's checkpoint shape (KeyError if the model has no such tensor)."""
    layer = None
    if name.startswith("h") and "_" in name and name[1:name.index("_")].isdigit():
        layer = int(name[1:name.index("_")])
        if layer >= n_layer:
            raise KeyError(name)
    for t in PARAMETERS.values():
        if t(layer) == name and (layer is None) != t.per_layer:
            r, c = t.dims(dims(n_layer, 1, n_embd, vocab_size, n_ctx))
            return (c,) if t.shape[0] == "1" else (r, c)
    raise KeyError(name)


def hf_key(name: str) -> str:
    """Our name -> the Hugging Face checkpoint key: h3_attn_c_attn_w -> h.3.attn.c_attn.weight."""
    return _HF[name] if name in _HF else _hf_layer(name)


_HF = {t.template: t.hf for t in PARAMETERS.values() if not t.per_layer}


def _hf_layer(name: str) -> str:
    if name.startswith("h") and "_" in name and name[1:name.index("_")].isdigit():
        layer = int(name[1:name.index("_")])
        for t in PARAMETERS.values():
            if t.per_layer and t(layer) == name:
                return t.hf.format(l=layer)
    raise KeyError(name)
