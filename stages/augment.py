"""Back-translation (or synonym) augmentation of the rare relation classes of the train split.

Targets: every positive class with fewer original train examples than a target gets
paraphrases until it reaches the target or its sources run out. The target is
``target_count`` when > 0, else ``ceil(target_share * size of the largest positive
class)``. NO_RELATION is never augmented; dev/test never reach this stage.

Span protection: the subject and object spans are replaced by placeholder tokens
(``ZXQA``/``ZXQB``: opaque to every backend, so they pass through unchanged), the
protected text is sent through the backend, and the placeholders are put back to
rebuild an Example with exact spans. A paraphrase is dropped, counted by reason, when
a placeholder is lost or duplicated (``span_lost``), when it equals its source
(``same_as_source``) or an earlier paraphrase (``duplicate``), or when its length
ratio to the source is outside bounds (``length_ratio``).

Variants: paraphrase k of a source is one more round trip of paraphrase k-1's
protected text (all backends are deterministic per text), up to ``max_per_source``.

Backends, all used through nlpaug's Augmenter interface (``augment(list_of_texts)``):
- ``apertium``: ApertiumBackTranslationAug below (Debian apertium, eng -> pivot -> eng);
  a batch is one process call per direction, sentences joined by a separator line.
- ``marian``: nlpaug's BackTranslationAug with two MarianMT models (hub ids already in
  the local Hugging Face cache, or local folders); nothing is downloaded.
- ``synonym``: WordNetSynonymAug below, nlpaug's SynonymAug reading Debian's
  wordnet-base through NLTK (no NLTK download; no POS tagger offline, so untagged).
- ``none``: no augmentation.

A batch is the unit of translation, of caching and of determinism. Apertium's tagger runs over
the whole stream, so a sentence's round trip depends on its neighbours in the batch (measured on
150 train sentences: 10 differ when translated alone, 25 when the batch order is reversed); a
neural backend pads a batch, which can do the same. So ``content_batches`` forms the batches from
the texts themselves (sorted by digest, cut where a digest says so), and the cache stores each
output under (backend, model, batch digest, text): the same texts give the same batches and the
same outputs, whatever the cache held before, and a new text changes only the batch it falls in.
A rerun (e.g. with a larger target) translates only the batches it has not seen.
"""
from __future__ import annotations

import logging
import math
import random
import re
import shutil
import sqlite3
import subprocess
import threading
import types
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Literal, Sequence

from .cache import make_key
from .errors import InputError
from .records import NO_RELATION, Example, Span

log = logging.getLogger(__name__)

PLACEHOLDERS = {"subj": "ZXQA", "obj": "ZXQB"}
PLACEHOLDER_RE = re.compile(r"\b(ZXQA|ZXQB)\b")
DROP_REASONS = ("span_lost", "same_as_source", "duplicate", "length_ratio", "unprotectable")

RoundTrip = Callable[[list[str]], list[str]]  # one batch through the backend, as one unit
Translate = Callable[[list[list[str]]], list[list[str]]]  # many batches (the flow maps them as tasks)


def per_batch(round_trip: RoundTrip) -> Translate:
    """A ``Translate`` that sends the batches one after the other through ``round_trip``."""
    return lambda batches: [round_trip(b) for b in batches]


def _digest(text: str) -> int:
    return int(make_key(text)[:15], 16)


def content_batches(texts: Sequence[str], size: int) -> list[list[str]]:
    """The distinct ``texts`` in batches that depend only on which texts there are.

    Texts are sorted by digest and a batch ends after a text whose digest is a multiple of
    ``size`` (content-defined chunking: about ``size`` texts a batch, at most ``2 * size``).
    Adding or removing a text changes its own batch and, at most, the one after it."""
    if size < 1:
        raise ValueError(f"batch size {size}: must be at least 1")
    keyed = sorted((_digest(t), t) for t in set(texts))
    batches: list[list[str]] = []
    current: list[str] = []
    for h, text in keyed:
        current.append(text)
        if h % size == 0 or len(current) >= 2 * size:
            batches.append(current)
            current = []
    if current:
        batches.append(current)
    return batches


def batch_digest(batch: Sequence[str]) -> str:
    return make_key(*batch)


class BackendMissing(InputError):
    """The configured backend cannot run here; the message says what to install or set."""


@dataclass
class AugmentParams:
    train: str = "data/split/train.jsonl"
    out: str = "data/augmented/train.jsonl"
    report: str = "reports/augment.json"
    backend: Literal["apertium", "marian", "synonym", "none"] = "apertium"
    pivot: str = "spa"  # apertium: eng -> pivot -> eng (needs apertium-eng-<pivot>)
    apertium_bin: str = "apertium"
    marian_models: list[str] = field(
        default_factory=lambda: ["Helsinki-NLP/opus-mt-en-de", "Helsinki-NLP/opus-mt-de-en"]
    )  # [forward, backward]: hub ids in the local HF cache or local folders
    wordnet_dir: str = "/usr/share/wordnet"  # Debian wordnet-base
    synonym_p: float = 0.2  # share of words the synonym backend replaces
    target_count: int = 0
    target_share: float = 0.5
    max_per_source: int = 2
    min_length_ratio: float = 0.5
    max_length_ratio: float = 2.0
    batch_size: int = 200  # sentences per translation task
    seed: int = 13

    def check(self) -> None:
        if self.target_count < 0:
            raise ValueError("target_count must be >= 0 (0: use target_share)")
        if not 0.0 < self.target_share <= 10.0:
            raise ValueError("target_share must be in (0, 10]")
        if self.max_per_source < 1:
            raise ValueError("max_per_source must be >= 1")
        if not 0.0 < self.min_length_ratio <= 1.0 <= self.max_length_ratio:
            raise ValueError("need 0 < min_length_ratio <= 1 <= max_length_ratio")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not 0.0 < self.synonym_p <= 1.0:
            raise ValueError("synonym_p must be in (0, 1]")
        if len(self.marian_models) != 2:
            raise ValueError("marian_models must be [forward model, backward model]")


# --- span protection ----------------------------------------------------------


def protect(ex: Example) -> str | None:
    """The example's text with subject and object replaced by placeholders (None if they overlap)."""
    spans = sorted((("subj", ex.subj), ("obj", ex.obj)), key=lambda r: r[1].start)
    (_, first), (_, second) = spans
    if first.end > second.start or PLACEHOLDER_RE.search(ex.text):
        return None
    out, pos = [], 0
    for role, sp in spans:
        out += [ex.text[pos:sp.start], PLACEHOLDERS[role]]
        pos = sp.end
    out.append(ex.text[pos:])
    return "".join(out)


_WORD_RE = re.compile(r"[^\W\d_]+", re.UNICODE)


def _fix_case(text: str, source: str) -> str:
    """Undo case changes a backend made around placeholders, e.g. Apertium's
    'ZXQA Was found' (it capitalises the first word it knows after an unknown one)."""
    src_words = set(_WORD_RE.findall(source))

    def lower_if_foreign(m: re.Match) -> str:
        w = m.group(0)
        if m.start() > 0 and w.istitle() and w not in src_words and w.lower() in src_words:
            return w.lower()
        return w

    text = _WORD_RE.sub(lower_if_foreign, text)
    if source[:1].isupper() and text[:1].islower():
        text = text[0].upper() + text[1:]
    return text


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def restore(src: Example, translated: str, new_id: str, params: AugmentParams) -> Example | str:
    """Rebuild an Example from a protected paraphrase, or return the drop reason."""
    text = " ".join(translated.split())
    found = PLACEHOLDER_RE.findall(text)
    if sorted(found) != sorted(PLACEHOLDERS.values()):
        return "span_lost"
    text = _fix_case(text, src.text)
    roles = {v: k for k, v in PLACEHOLDERS.items()}
    pieces, pos, spans = [], 0, {}
    out_len = 0
    for m in PLACEHOLDER_RE.finditer(text):
        before = text[pos:m.start()]
        pieces.append(before)
        out_len += len(before)
        role = roles[m.group(1)]
        orig: Span = getattr(src, role)
        spans[role] = Span(start=out_len, end=out_len + len(orig.text), type=orig.type, text=orig.text)
        pieces.append(orig.text)
        out_len += len(orig.text)
        pos = m.end()
    pieces.append(text[pos:])
    new_text = "".join(pieces)
    if _norm(new_text) == _norm(src.text):
        return "same_as_source"
    ratio = len(new_text) / max(1, len(src.text))
    if not params.min_length_ratio <= ratio <= params.max_length_ratio:
        return "length_ratio"
    ex = replace(
        src, id=new_id, text=new_text, subj=spans["subj"], obj=spans["obj"],
        origin="augmented", source_id=src.id, rules=list(src.rules),
    )
    ex.validate()
    return ex


# --- translation cache ----------------------------------------------------------


class TranslationCache:
    """(backend, model, batch digest, text) -> output, in <root>/translations/cache.sqlite.

    An output is served only for the batch it was translated in (module docstring: a round trip
    depends on its batch). SQLite gives atomic, concurrent-safe writes; one connection per call
    keeps it usable from any thread."""

    def __init__(self, root: str | Path):
        self.path = Path(root) / "translations" / "cache.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("DROP TABLE IF EXISTS tr")  # keyed by text alone (before 2026-12-02): not reproducible
            db.execute(
                "CREATE TABLE IF NOT EXISTS batch_tr (backend TEXT, model TEXT, batch TEXT, text TEXT, output TEXT, "
                "PRIMARY KEY (backend, model, batch, text))"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def get_batch(self, backend: str, model: str, batch: Sequence[str]) -> list[str] | None:
        """The outputs of ``batch`` in its order, or None unless every text of it is stored."""
        with self._connect() as db:
            rows = dict(db.execute(
                "SELECT text, output FROM batch_tr WHERE backend=? AND model=? AND batch=?",
                [backend, model, batch_digest(batch)],
            ).fetchall())
        if any(t not in rows for t in batch):
            return None
        return [rows[t] for t in batch]

    def put_batch(self, backend: str, model: str, batch: Sequence[str], outputs: Sequence[str]) -> None:
        key = batch_digest(batch)
        with self._connect() as db:
            db.executemany(
                "INSERT OR REPLACE INTO batch_tr VALUES (?, ?, ?, ?, ?)",
                [(backend, model, key, t, o) for t, o in zip(batch, outputs)],
            )

    def count(self, backend: str | None = None) -> int:
        """Stored outputs (texts, counted once per batch they were translated in)."""
        with self._connect() as db:
            if backend:
                return db.execute("SELECT COUNT(*) FROM batch_tr WHERE backend=?", [backend]).fetchone()[0]
            return db.execute("SELECT COUNT(*) FROM batch_tr").fetchone()[0]


# --- backends ---------------------------------------------------------------------


def _word_augmenter_base():
    import nlpaug.augmenter.word as naw  # noqa: PLC0415  (nlpaug pulls in pandas: import when used)

    return naw


class _BatchMixin:
    """nlpaug's Augmenter.augment calls substitute once per item for a list unless the class is
    one of its own torch augmenters; ours translate a whole list in one go."""

    def augment(self, data, n: int = 1, num_thread: int = 1):  # type: ignore[override]
        if isinstance(data, list):
            return self.substitute([d.strip() for d in data]) if data else []
        return super().augment(data, n=n, num_thread=num_thread)  # type: ignore[misc]


SEPARATOR = "ZZSEPZZ"
_SEP_SPLIT = re.compile(rf"\n\s*{SEPARATOR}\s*\n")


def make_apertium_aug(binary: str, source: str, pivot: str):
    # nlpaug's base class only: nlpaug.augmenter.word imports transformers (~20 s on 2 cores)
    from nlpaug.base_augmenter import Augmenter
    from nlpaug.util import Action, Method

    class ApertiumBackTranslationAug(_BatchMixin, Augmenter):
        """Back-translation source -> pivot -> source with the Apertium CLI.

        A batch is translated with one process per direction: texts are joined with a
        separator line (an unknown word Apertium copies through), which is how this
        reaches hundreds of sentences per second."""

        def __init__(self) -> None:
            super().__init__(name="Apertium_Aug", method=Method.WORD, action=Action.SUBSTITUTE,
                             aug_min=None, aug_max=None, aug_p=None)
            self.binary, self.forward, self.backward = binary, f"{source}-{pivot}", f"{pivot}-{source}"

        @classmethod
        def clean(cls, data):
            return [d.strip() for d in data] if isinstance(data, list) else str(data).strip()

        def substitute(self, data):
            texts = [data] if isinstance(data, str) else list(data)
            back = self.translate(self.backward, self.translate(self.forward, texts))
            return back[0] if isinstance(data, str) else back

        def translate(self, direction: str, texts: list[str]) -> list[str]:
            if not texts:
                return []
            payload = f"\n\n{SEPARATOR}\n\n".join(" ".join(t.split()) for t in texts) + "\n"
            proc = subprocess.run(
                [self.binary, "-u", direction], input=payload, capture_output=True, text=True,
                timeout=60 + 0.5 * len(texts),
            )
            if proc.returncode != 0:
                raise RuntimeError(f"apertium {direction} failed: {proc.stderr.strip()[:300]}")
            parts = [" ".join(p.split()) for p in _SEP_SPLIT.split(proc.stdout.strip())]
            if len(parts) != len(texts):
                if len(texts) == 1:
                    return [" ".join(proc.stdout.split())]
                # the separator was mangled somewhere: halve the batch until it survives
                mid = len(texts) // 2
                return self.translate(direction, texts[:mid]) + self.translate(direction, texts[mid:])
            # '#'/'@' mark words Apertium could not generate/transfer; keep the word, drop the mark
            return [re.sub(r"(?<!\S)[#@](?=\w)", "", p) for p in parts]

    return ApertiumBackTranslationAug()


def check_apertium(binary: str, pivot: str) -> None:
    pkg = f"apertium-eng-{pivot}"
    if shutil.which(binary) is None:
        raise BackendMissing(
            f"params.yaml augment.backend=apertium: '{binary}' not found; install it with "
            f"`apt-get install apertium {pkg}` (or choose another augment.backend)"
        )
    proc = subprocess.run([binary, "-l"], capture_output=True, text=True, timeout=60)
    modes = set(proc.stdout.split())
    missing = [d for d in (f"eng-{pivot}", f"{pivot}-eng") if d not in modes]
    if missing:
        raise BackendMissing(
            f"params.yaml augment.pivot={pivot}: apertium has no {', '.join(missing)} mode; "
            f"install it with `apt-get install {pkg}`"
        )


_LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_WORDNET_FILES = ("data.noun", "index.noun", "data.verb", "index.verb", "data.adj", "index.adj",
                  "data.adv", "index.adv", "noun.exc", "verb.exc", "adj.exc", "adv.exc")
_STOPWORDS = set(
    "a an the of in on at to from by for with and or but as is are was were be been being has have had "
    "it its this that these those which who whom whose where when than then there their they them we our "
    "us he she his her i you not no nor so such also into onto upon over under between within without "
    "about above below after before during while both each all any some more most other only same very "
    "can could may might must shall should will would do does did".split()
)


def _check_wordnet(wordnet_dir: str | Path) -> None:
    missing = [f for f in _WORDNET_FILES if not (Path(wordnet_dir) / f).exists()]
    if missing:
        raise BackendMissing(
            f"params.yaml augment.wordnet_dir={wordnet_dir}: WordNet files missing ({', '.join(missing[:3])}...); "
            "install them with `apt-get install wordnet-base` (or point augment.wordnet_dir at a WordNet 3.0 dict)"
        )


_LEX_POS = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


def make_synonym_aug(wordnet_dir: str | Path, cache_dir: str | Path, aug_p: float):
    try:
        import nltk  # noqa: F401
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError as exc:
        raise BackendMissing(
            "params.yaml augment.backend=synonym needs nltk (nlpaug's WordNet source): "
            "`uv pip install nltk` (and `apt-get install wordnet-base` for the data)"
        ) from exc
    import io
    import warnings

    import nltk.data
    import nlpaug.model.word_dict as nmw

    naw = _word_augmenter_base()
    _check_wordnet(wordnet_dir)
    root = str(Path(wordnet_dir).resolve())
    if root not in nltk.data.path:  # NLTK only opens corpus folders under its data path
        nltk.data.path.append(root)
    lexnames = "".join(f"{i:02d}\t{n}\t{_LEX_POS[n.split('.')[0]]}\n" for i, n in enumerate(_LEXNAMES))

    class DebianWordNetReader(WordNetCorpusReader):
        """Debian's wordnet-base lacks the `lexnames` file NLTK reads; its content is fixed by
        WordNet 3.0 (lexnames(5WN)), so it is served from memory."""

        def open(self, fileid):
            if fileid == "lexnames":
                return io.StringIO(lexnames)
            return super().open(fileid)

        def map_wn(self, version="wordnet"):
            return None  # mapping other WordNet versions is only for multilingual data, unused here

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "multilingual functions are not available"
        reader = DebianWordNetReader(root, None)

    class OfflineWordNet(nmw.WordNet):
        """nlpaug's WordNet model over a local reader (its own __init__ would call nltk.download)."""

        def __init__(self) -> None:  # noqa: D107
            nmw.WordDictionary.__init__(self, cache=True)
            self.lang, self.is_synonym, self.model = "eng", True, reader

        @classmethod
        def pos_tag(cls, tokens):
            # NLTK's tagger data is not available offline and blank spaCy has no tagger:
            # untagged, so candidates come from every part of speech
            return [(t, "") for t in tokens]

    class WordNetSynonymAug(naw.SynonymAug):
        def get_model(self, aug_src, lang, dict_path, force_reload):  # type: ignore[override]
            return OfflineWordNet()

    return WordNetSynonymAug(
        aug_p=aug_p,
        stopwords=sorted(_STOPWORDS | set(PLACEHOLDERS.values())),
        # skip punctuation/space runs and capitalised words (names, other entities)
        stopwords_regex=r"^\W+$|^[A-Z]",
        tokenizer=lambda text: [t for t in re.split(r"(\W+)", text) if t],
        reverse_tokenizer=lambda tokens: "".join(tokens),
    )


def resolve_marian(name: str) -> str:
    """A local folder for a Marian model: the folder itself, or the hub id's local HF cache copy."""
    if Path(name).is_dir():
        return str(Path(name))
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name, local_files_only=True)
    except Exception as exc:
        raise BackendMissing(
            f"params.yaml augment.marian_models: {name!r} is neither a local folder nor in the local "
            f"Hugging Face cache; fetch it once with `huggingface-cli download {name}` "
            "(or set augment.marian_models to local folders)"
        ) from exc


def check_marian(models: list[str]) -> list[str]:
    for mod, pkg in (("transformers", "transformers"), ("sentencepiece", "sentencepiece"), ("torch", "torch")):
        try:
            __import__(mod)
        except ImportError as exc:
            raise BackendMissing(
                f"params.yaml augment.backend=marian needs {pkg}: `uv pip install {pkg}`"
            ) from exc
    return [resolve_marian(m) for m in models]


def make_marian_aug(models: list[str], batch_size: int):
    naw = _word_augmenter_base()
    fwd, bwd = check_marian(models)
    aug = naw.BackTranslationAug(from_model_name=fwd, to_model_name=bwd, device="cpu",
                                 batch_size=batch_size, max_length=256)
    mt = aug.model
    # generation must stay within both models' position tables
    mt.max_length = min(256, mt.src_model.config.max_position_embeddings, mt.tgt_model.config.max_position_embeddings)
    mt.translate_one_step_batched = types.MethodType(_translate_in_process, mt)
    return aug


def _translate_in_process(self, data: list[str], tokenizer, model) -> list[str]:
    """nlpaug's MtTransformers step without its DataLoader worker process: a forked worker
    dies in processes that run threads (Prefect's runner, its API client)."""
    import torch

    out: list[str] = []
    with torch.no_grad():
        for i in range(0, len(data), self.batch_size):
            enc = tokenizer(data[i:i + self.batch_size], padding=True, truncation=True, return_tensors="pt")
            ids = model.generate(input_ids=enc["input_ids"].to(self.device),
                                 attention_mask=enc["attention_mask"].to(self.device), max_length=self.max_length)
            out += tokenizer.batch_decode(ids, skip_special_tokens=True)
    return out


class Backend:
    """A round-trip paraphraser: one nlpaug augmenter and the (name, model) key of its cache entries."""

    def __init__(self, params: AugmentParams, cache_dir: str | Path):
        self.name = params.backend
        self.seed = params.seed
        self._lock = threading.Lock()
        if self.name == "apertium":
            check_apertium(params.apertium_bin, params.pivot)
            self.model = f"eng-{params.pivot}-eng"
            self.aug = make_apertium_aug(params.apertium_bin, "eng", params.pivot)
        elif self.name == "marian":
            self.model = "|".join(params.marian_models)
            self.aug = make_marian_aug(params.marian_models, params.batch_size)
        elif self.name == "synonym":
            self.model = f"wordnet:p={params.synonym_p}:seed={params.seed}"
            self.aug = make_synonym_aug(params.wordnet_dir, cache_dir, params.synonym_p)
        else:
            self.model, self.aug = "none", None

    def round_trip(self, texts: list[str]) -> list[str]:
        if not texts:
            return []
        if self.aug is None:
            return list(texts)
        if self.name == "synonym":
            out = []
            with self._lock:  # nlpaug samples from the global `random`: seed per text, one at a time
                for t in texts:
                    random.seed(make_key(self.seed, t))
                    res = self.aug.augment(t)
                    out.append(res[0] if isinstance(res, list) else res)
            return out
        with self._lock:  # one model/process pipeline per backend object
            out = self.aug.augment(list(texts))
        if len(out) != len(texts):
            raise RuntimeError(f"{self.name}: got {len(out)} outputs for {len(texts)} texts")
        return list(out)


def check_backend(params: AugmentParams) -> None:
    """Raise BackendMissing (what to install) without building models."""
    if params.backend == "apertium":
        check_apertium(params.apertium_bin, params.pivot)
    elif params.backend == "marian":
        check_marian(params.marian_models)
    elif params.backend == "synonym":
        try:
            import nltk  # noqa: F401
        except ImportError as exc:
            raise BackendMissing("params.yaml augment.backend=synonym needs nltk: `uv pip install nltk`") from exc
        _check_wordnet(params.wordnet_dir)


_BACKENDS: dict[str, Backend] = {}
_BACKENDS_LOCK = threading.Lock()


def get_backend(params: AugmentParams, cache_dir: str | Path) -> Backend:
    """One Backend per process and configuration (models load once, also in Dask workers)."""
    key = make_key(params.backend, params.pivot, params.apertium_bin, params.marian_models,
                   params.wordnet_dir, params.synonym_p, params.seed, params.batch_size, str(cache_dir))
    with _BACKENDS_LOCK:
        if key not in _BACKENDS:
            _BACKENDS[key] = Backend(params, cache_dir)
        return _BACKENDS[key]


def backend_model_id(params: AugmentParams) -> str:
    return {
        "apertium": f"eng-{params.pivot}-eng",
        "marian": "|".join(params.marian_models),
        "synonym": f"wordnet:p={params.synonym_p}:seed={params.seed}",
    }.get(params.backend, "none")


# --- planning and the augmentation loop ----------------------------------------------


def class_targets(train: list[Example], params: AugmentParams) -> dict[str, int]:
    """Target count of every positive class below target (NO_RELATION never)."""
    counts = Counter(e.label for e in train if e.origin != "augmented")
    positives = {lbl: n for lbl, n in counts.items() if lbl != NO_RELATION}
    if not positives:
        return {}
    target = params.target_count or math.ceil(params.target_share * max(positives.values()))
    return {lbl: target for lbl, n in sorted(positives.items()) if n < target}


@dataclass
class AugmentResult:
    examples: list[Example]  # originals, then kept paraphrases
    added: list[Example]
    report: dict


def cached_round_trip(
    texts: list[str], translate: Translate, cache: TranslationCache | None, backend: str, model: str,
    batch_size: int, stats: Counter,
) -> dict[str, str]:
    """text -> round trip for the distinct ``texts``, in ``content_batches``; the batches the cache
    does not hold go to ``translate`` together."""
    batches = content_batches(texts, batch_size)
    found: dict[str, str] = {}
    todo: list[list[str]] = []
    for batch in batches:
        outs = cache.get_batch(backend, model, batch) if cache else None
        if outs is None:
            todo.append(batch)
        else:
            found.update(zip(batch, outs))
    stats["from_cache"] += sum(len(b) for b in batches) - sum(len(b) for b in todo)
    stats["new"] += sum(len(b) for b in todo)
    stats["batches"] += len(batches)
    stats["new_batches"] += len(todo)
    if todo:
        results = translate(todo)
        if len(results) != len(todo):
            raise RuntimeError(f"{backend}: {len(results)} batches back for {len(todo)} sent")
        for batch, outs in zip(todo, results):
            if len(outs) != len(batch):
                raise RuntimeError(f"{backend}: {len(outs)} outputs for a batch of {len(batch)} texts")
            if cache:
                cache.put_batch(backend, model, batch, outs)
            found.update(zip(batch, outs))
    return found


def augment_examples(
    train: list[Example], params: AugmentParams, translate: Translate, cache: TranslationCache | None,
) -> AugmentResult:
    """Add paraphrases of rare-class train examples; ``translate`` does the backend round trips
    of a list of batches (the flow maps them as tasks; ``per_batch`` sends them one by one),
    ``cache`` serves batches already translated."""
    originals = [e for e in train if e.origin != "augmented"]
    before = Counter(e.label for e in originals)
    targets = class_targets(originals, params) if params.backend != "none" else {}
    model = backend_model_id(params)
    dropped: Counter = Counter()
    tr_stats: Counter = Counter()
    kept: dict[str, list[Example]] = defaultdict(list)

    # a deterministic source order per class; the same prefix is taken when a target grows,
    # so most of a rerun's batches are ones the cache holds (content_batches)
    order: dict[str, list[Example]] = {}
    chain: dict[str, str] = {}  # source id -> protected text of its next round trip
    for lbl in targets:
        srcs = sorted((e for e in originals if e.label == lbl), key=lambda e: e.id)
        random.Random(f"{params.seed}:{lbl}").shuffle(srcs)
        order[lbl] = []
        for e in srcs:
            p = protect(e)
            if p is None:
                dropped["unprotectable"] += 1
                continue
            order[lbl].append(e)
            chain[e.id] = p
    seen: dict[str, set[str]] = {e.id: {_norm(e.text)} for srcs in order.values() for e in srcs}

    for variant in range(1, params.max_per_source + 1):
        pointer = {lbl: 0 for lbl in targets}
        while True:
            requests: list[Example] = []
            for lbl, target in targets.items():
                need = target - before[lbl] - len(kept[lbl])
                srcs = order[lbl]
                while need > 0 and pointer[lbl] < len(srcs):
                    src = srcs[pointer[lbl]]
                    pointer[lbl] += 1
                    if src.id in chain:
                        requests.append(src)
                        need -= 1
            if not requests:
                break
            inputs = {src.id: chain.pop(src.id) for src in requests}
            outputs = cached_round_trip(list(inputs.values()), translate, cache, params.backend, model,
                                        params.batch_size, tr_stats)
            for src in requests:
                out = outputs[inputs[src.id]]
                res = restore(src, out, f"{src.id}~{params.backend}{variant}", params)
                if res != "span_lost" and out != inputs[src.id]:
                    chain[src.id] = out  # the next variant re-translates this one
                if isinstance(res, str):
                    dropped[res] += 1
                    continue
                key = _norm(res.text)
                if key in seen[src.id]:
                    dropped["duplicate"] += 1
                    continue
                seen[src.id].add(key)
                kept[src.label].append(res)
        log.info("variant %d: kept %d paraphrases so far", variant, sum(len(v) for v in kept.values()))

    added = [e for lbl in sorted(kept) for e in kept[lbl]]
    after = before + Counter(e.label for e in added)
    report = {
        "backend": params.backend,
        "model": model,
        "targets": targets,
        "kept": len(added),
        "dropped": {r: dropped.get(r, 0) for r in DROP_REASONS},
        "per_class": {
            lbl: {"before": before[lbl], "after": after[lbl], "added": after[lbl] - before[lbl]}
            for lbl in sorted(after)
        },
        "translations": {"from_cache": tr_stats["from_cache"], "new": tr_stats["new"],
                         "batches": tr_stats["batches"], "new_batches": tr_stats["new_batches"]},
    }
    return AugmentResult(examples=originals + added, added=added, report=report)
