"""Pattern files: load, validate and compile the entity and relation patterns.

Two YAML files steer the weak-supervision engine (see the comments in
``data/patterns/entities.yaml`` and ``data/patterns/relations.yaml`` for the
curator's view). Everything a domain needs lives in them: switching from
palaeontology to, say, biomedicine means new files, not new code.

Validation happens at load: an unknown key, an unknown entity type, a template
slot naming a type the schema lacks or a regex that does not compile raises
``InputError`` naming the file, the pattern id and the fix. Regexes are compiled
with the ``regex`` package so every user pattern can run under a time limit
(``timeout=``): a catastrophic pattern is reported and skipped, never a hang.

``ANY`` in a relation's args or a template slot is expanded here, at load, into the
concrete type pairs: every consumer of a spec sees concrete pairs only, and a domain
with many types writes a template once instead of once per type pair. The rule
language is described in docs/domains.md.
"""
from __future__ import annotations

import csv
import re as _re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import regex
import yaml

from .errors import InputError

SCHEMA_VERSION = 1
CASE_RULES = ("exact", "title", "any")
ROLES = ("subj", "obj")
SCOPES = ("between", "sentence")
# `ANY` in a relation's args or a template slot stands for every declared entity type. It is
# expanded to concrete type pairs when the file is loaded, so every consumer of the spec
# (candidates, calibration's type constraints, schema_args, the co-occurrence baseline) sees
# concrete pairs only; no entity type may be called ANY.
ANY = "ANY"
# How the mentions lying between a pair appear in the text its templates, negative cues and
# `between` vetoes see: `type` as <TYPE>, `text` as their own words.
INNER_MENTIONS = ("type", "text")
DEFAULT_LOOKBACK = 120  # characters before the first mention a template's prefix may look at
# Where a veto's regex looks: the text before the first mention / between / after the second,
# the whole sentence, a mention's own text (by text order or by role), or the text before or
# after the subject / object mention.
VETO_SCOPES = ("before", "between", "after", "sentence", "first", "second", "subj", "obj",
               "before_subj", "before_obj", "after_subj", "after_obj")

# A template slot: {TYPE} or {TYPE:subj|obj}. Type names start with a capital
# letter, so regex quantifiers such as {2,3} are never mistaken for slots.
SLOT_RE = _re.compile(r"\{([A-Za-z][A-Za-z0-9_]*)(?::([a-z]+))?\}")


# --- records -----------------------------------------------------------------


@dataclass
class TypeSpec:
    name: str
    description: str = ""
    extend_left: Any = None  # compiled regex that must end right before a mention
    extend_right: Any = None  # compiled regex that must start right after it


@dataclass
class RegexPattern:
    id: str
    type: str
    regex: Any  # compiled regex.Pattern; span = group "mention" if present, else the match
    priority: int = 50
    source: str = ""  # the regex text, for reports


@dataclass
class Gazetteer:
    id: str
    type: str
    path: Path
    names: list[str]  # the kept names, as written in the file (after filters)
    case: str = "exact"  # exact | title | any
    priority: int = 30
    dropped: int = 0  # entries removed by stop-list, length or drop_regex filters


@dataclass
class Exclusion:
    id: str
    regex: Any
    match: str = "full"  # full: drop a mention whose text matches; overlap: drop mentions touching a match
    types: list[str] = field(default_factory=list)  # empty = every type


@dataclass
class Propagation:
    """Document-level propagation: a name taken from a mention found by ``sources``
    anywhere in a paper is a mention wherever else it appears in that paper
    (a genus named once in a binomial, then alone: "Ptychagnostus atavus" ... "Ptychagnostus")."""
    id: str
    type: str
    sources: list[str]  # pattern / gazetteer ids whose mentions teach the names
    take: Any  # compiled; group "name" (or the whole match) of the mention text is the name
    min_length: int = 4
    priority: int = 30
    # where a taught name may stand: ``before`` must match the text just before it (anchored at
    # the name), ``after`` the text just after it; with either given, a place where neither
    # matches is left alone ("Latorp" in "the Latorp-TØyen succession", not "Cook and Taylor")
    before: Any = None
    after: Any = None
    # the types whose mentions block a name (a word inside one of them is never taught);
    # None: every other type. A place inside a rock unit's name ("Fågelsång Phosphorite")
    # should not stop the place being taught, as units are named after places.
    blocked_by: list[str] | None = None


@dataclass
class EntitySpec:
    path: Path
    types: dict[str, TypeSpec]
    patterns: list[RegexPattern]
    gazetteers: list[Gazetteer]
    exclusions: list[Exclusion]
    stoplist: set[str]  # lower-cased mention texts never kept, whatever found them
    gazetteer_files: list[Path]
    propagation: list[Propagation] = field(default_factory=list)


@dataclass
class Template:
    id: str
    relation: str
    types: tuple[str, str]  # slot types in text order
    roles: tuple[str, str]  # role of each slot in text order ("subj"/"obj")
    prefix: Any  # compiled, must end where the first mention starts (or None)
    middle: Any  # compiled, must span exactly the text between the mentions
    suffix: Any  # compiled, must start where the second mention ends (or None)
    priority: int
    source: str
    inner_mentions: str = "type"  # how mentions between the pair appear to the middle (INNER_MENTIONS)

    def middle_fits(self, text: str, start: int, end: int, timeout: float | None = None) -> bool:
        """Whether the middle spans exactly text[start:end] (the gap between the two mentions),
        judged inside ``text``: ``\\b`` or a look-around at either edge sees the character
        beside it (the first mention's last one, the second mention's first one)."""
        return self.middle.match(text, start, end + 1, timeout=timeout) is not None


@dataclass
class NegativeCue:
    id: str
    relation: str
    regex: Any
    scope: str = "between"


@dataclass
class Veto:
    """A label source voting NO_RELATION: its regex matched its scope of the candidate (all
    conditions must hold), or the two mention texts are the same name (``same_text``)."""
    id: str
    relations: list[str]  # relations it speaks against (empty = every relation)
    regex: Any = None  # compiled or None (then only the other conditions count)
    scope: str = "between"
    same_text: bool | None = None  # true: fires only when both mention texts are equal (case/space-folded)
    kinds: list[str] = field(default_factory=list)  # fires only on sentences of these kinds (table, heading...)
    source: str = ""
    description: str = ""
    shape: "TextShape | None" = None  # fires only on sentences of this shape (measured on the text itself)
    exclude: bool = False  # the pairs it fires on are not annotated: no candidate, NO_RELATION in every decision
    subj_first: bool | None = None  # true: only when the subject comes first in the text; false: the object


# What may close a sentence after its full stop: "... a ‘euomphalid mollusk.’", "(fig. 3).)".
_CLOSERS = ")]}\"'’”»"
_TERMINALS = ".?!"


@dataclass
class TextShape:
    """A veto condition measured on the sentence text itself, for text that is not prose (table
    rows run together, lists of names and numbers), whatever the mine stage called it: gold or
    imported records carry no `kind`. Every threshold given must hold; tokens are
    whitespace-separated, stripped of punctuation at their edges."""
    min_tokens: int = 1
    terminated: bool | None = None  # false: the text does not end in . ? ! (closing quotes/brackets aside)
    min_digit_share: float | None = None    # share of tokens containing a digit
    min_capital_share: float | None = None  # share of tokens after the first that start with a capital
    max_function_share: float | None = None  # share of tokens in function_words
    function_words: frozenset = frozenset()

    def measure(self, text: str) -> dict[str, Any]:
        toks = [t.strip(".,;:()[]{}\"'’‘“”") for t in text.split()]
        toks = [t for t in toks if t]
        n = len(toks)
        end = text.rstrip().rstrip(_CLOSERS).rstrip()
        return {
            "tokens": n,
            "terminated": bool(end) and end[-1] in _TERMINALS,
            "digit_share": sum(any(c.isdigit() for c in t) for t in toks) / n if n else 0.0,
            "capital_share": sum(t[:1].isupper() for t in toks[1:]) / (n - 1) if n > 1 else 0.0,
            "function_share": sum(t.casefold() in self.function_words for t in toks) / n if n else 0.0,
        }

    def holds(self, text: str) -> bool:
        m = self.measure(text)
        if m["tokens"] < self.min_tokens:
            return False
        if self.terminated is not None and m["terminated"] != self.terminated:
            return False
        if self.min_digit_share is not None and m["digit_share"] < self.min_digit_share:
            return False
        if self.min_capital_share is not None and m["capital_share"] < self.min_capital_share:
            return False
        if self.max_function_share is not None and m["function_share"] > self.max_function_share:
            return False
        return True


_SHAPE_KEYS = {"min_tokens", "terminated", "min_digit_share", "min_capital_share", "max_function_share",
               "function_words"}


@dataclass
class RelationSpec:
    name: str
    args: list[tuple[str, str]]  # allowed (subject type, object type)
    priority: int
    max_distance: int
    templates: list[Template]
    negative_cues: list[NegativeCue]
    description: str = ""
    inner_mentions: str = "type"  # what its negative cues see between the pair (templates may override)


@dataclass
class RelationsSpec:
    path: Path
    relations: dict[str, RelationSpec]
    entity_types: set[str]
    max_distance: int
    vetoes: list[Veto] = field(default_factory=list)
    lookback: int = DEFAULT_LOOKBACK  # characters before the first mention a prefix may match in
    inner_mentions: str = "type"  # the file default; also what `between` vetoes see

    def allowed_pairs(self) -> dict[tuple[str, str], int]:
        """(subject type, object type) -> the largest max_distance of the relations allowing it."""
        out: dict[tuple[str, str], int] = {}
        for rel in self.relations.values():
            for pair in rel.args:
                out[pair] = max(out.get(pair, 0), rel.max_distance)
        return out

    def pair_names(self) -> dict[tuple[str, str], str]:
        """(type, type) in either order -> the reports' name of an allowed pair, "SUBJ-OBJ"
        (a pair allowed both ways is named the way it is first allowed)."""
        out: dict[tuple[str, str], str] = {}
        for s, o in self.allowed_pairs():
            name = out.get((o, s), f"{s}-{o}")
            out.setdefault((s, o), name)
            out.setdefault((o, s), name)
        return out


# --- helpers -------------------------------------------------------------------


class _Ctx:
    """Where we are in a pattern file, so every error names the file and the item."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, where: str, problem: str, fix: str) -> InputError:
        return InputError(f"{self.path}: {where}: {problem}; fix: {fix}")

    def keys(self, where: str, d: Any, allowed: set[str], required: set[str] = frozenset()) -> dict:
        if not isinstance(d, dict):
            raise self.fail(where, f"expected a mapping, got {type(d).__name__}", "write it as `key: value` lines")
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise self.fail(where, f"unknown key(s) {', '.join(map(repr, unknown))}",
                            f"use only {', '.join(sorted(allowed))} (check the spelling)")
        missing = sorted(required - set(d))
        if missing:
            raise self.fail(where, f"missing key(s) {', '.join(map(repr, missing))}", f"add {', '.join(missing)}")
        return d

    def compile(self, where: str, pattern: Any, flags: int = 0) -> Any:
        if not isinstance(pattern, str) or not pattern:
            raise self.fail(where, "the regex is empty or not a string", "quote the regex in single quotes")
        try:
            return regex.compile(pattern, flags | regex.VERSION0)
        except regex.error as exc:
            raise self.fail(where, f"regex does not compile ({exc})",
                            "escape special characters such as ( ) [ ] . ? with a backslash, or balance the brackets")

    def int_(self, where: str, key: str, value: Any, lo: int = 0) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < lo:
            raise self.fail(where, f"{key} = {value!r} is not an integer >= {lo}", f"set {key} to a whole number >= {lo}")
        return value

    def type_(self, where: str, name: Any, types: set[str], any_ok: bool = False) -> str:
        if name not in types and not (any_ok and name == ANY):
            raise self.fail(where, f"unknown entity type {name!r}",
                            f"use one of {', '.join(sorted(types))}{' (or ANY for every type)' if any_ok else ''} "
                            "or declare it under `types:` in the entities file")
        return name

    def choice(self, where: str, key: str, value: Any, options: tuple[str, ...]) -> str:
        if value not in options:
            raise self.fail(where, f"{key} = {value!r}", f"use one of {', '.join(options)}")
        return value


def _check_not_any(ctx: _Ctx, names: Any) -> None:
    if ANY in names:
        raise ctx.fail(f"type {ANY!r}", f"{ANY} is reserved: in relations.yaml it means every entity type",
                       "rename the type (e.g. ANY_ENTITY)")


def _read_yaml(path: Path, what: str) -> dict:
    if not path.exists():
        raise InputError(f"{path}: {what} pattern file not found; fix: create it or set the `patterns` param")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc}); fix: check indentation and quote regexes in single quotes") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: top level must be a mapping; fix: start with `version: {SCHEMA_VERSION}`")
    if data.get("version", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise InputError(f"{path}: version {data.get('version')!r} is not supported; fix: set `version: {SCHEMA_VERSION}`")
    return data


def _where(kind: str, i: int, item: Any, prefix: str = "") -> str:
    """Name an item by its id when it has one, else by its position."""
    if isinstance(item, dict) and isinstance(item.get("id"), str):
        return f"{prefix}{kind} {item['id']!r}"
    return f"{prefix}{kind}s[{i}]"


def _id(ctx: _Ctx, where: str, item: dict, seen: set[str]) -> str:
    pid = item.get("id")
    if not isinstance(pid, str) or not pid:
        raise ctx.fail(where, "missing `id`", "give every pattern a unique id such as `strat.formation`")
    if pid in seen:
        raise ctx.fail(f"pattern {pid!r}", "duplicate id", "rename one of the two patterns")
    seen.add(pid)
    return pid


# --- entities ------------------------------------------------------------------

_ENTITY_TOP = {"version", "description", "types", "stoplist", "patterns", "gazetteers", "exclusions", "propagation"}
_TYPE_KEYS = {"description", "extend_left", "extend_right"}
_PATTERN_KEYS = {"id", "type", "regex", "priority", "ignore_case", "description"}
_GAZ_KEYS = {"id", "type", "file", "column", "where", "header", "delimiter", "case", "min_length",
             "min_words", "stoplist", "drop_regex", "priority", "description"}
_EXCL_KEYS = {"id", "regex", "match", "types", "ignore_case", "description"}
_PROP_KEYS = {"id", "type", "from", "take", "min_length", "priority", "description", "before", "after",
              "blocked_by"}


def load_entity_spec(path: str | Path, base_dir: str | Path | None = None) -> EntitySpec:
    """Load and validate an entities pattern file. Gazetteer paths are relative to
    ``base_dir`` (default: the current directory, i.e. the project root)."""
    path = Path(path)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    ctx = _Ctx(path)
    data = ctx.keys("top level", _read_yaml(path, "entity"), _ENTITY_TOP, {"types"})

    raw_types = data["types"]
    if isinstance(raw_types, list):  # a plain list of names is allowed
        raw_types = {t: {} for t in raw_types}
    if not isinstance(raw_types, dict) or not raw_types:
        raise ctx.fail("types", "no entity types declared", "list the types, e.g. `types: {TAXON: {}, LOC: {}}`")
    types: dict[str, TypeSpec] = {}
    for name, spec in raw_types.items():
        where = f"type {name!r}"
        if not isinstance(name, str) or not _re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            raise ctx.fail(where, "type names must be UPPER_CASE", "rename it, e.g. TAXON")
        spec = ctx.keys(where, spec or {}, _TYPE_KEYS)
        ts = TypeSpec(name, spec.get("description", ""))
        if spec.get("extend_left"):
            ts.extend_left = ctx.compile(where + " extend_left", f"(?:{spec['extend_left']})\\Z")
        if spec.get("extend_right"):
            ts.extend_right = ctx.compile(where + " extend_right", spec["extend_right"])
        types[name] = ts
    _check_not_any(ctx, types)
    type_names = set(types)

    seen: set[str] = set()
    patterns: list[RegexPattern] = []
    for i, item in enumerate(data.get("patterns") or []):
        where = _where("pattern", i, item)
        ctx.keys(where, item, _PATTERN_KEYS, {"id", "type", "regex"})
        pid = _id(ctx, where, item, seen)
        where = f"pattern {pid!r}"
        ctx.type_(where, item["type"], type_names)
        flags = regex.IGNORECASE if item.get("ignore_case") else 0
        patterns.append(RegexPattern(pid, item["type"], ctx.compile(where, item["regex"], flags),
                                     ctx.int_(where, "priority", item.get("priority", 50)), item["regex"]))

    gazetteers: list[Gazetteer] = []
    files: list[Path] = []
    for i, item in enumerate(data.get("gazetteers") or []):
        where = _where("gazetteer", i, item)
        ctx.keys(where, item, _GAZ_KEYS, {"id", "type", "file"})
        gid = _id(ctx, where, item, seen)
        where = f"gazetteer {gid!r}"
        ctx.type_(where, item["type"], type_names)
        case = item.get("case", "exact")
        if case not in CASE_RULES:
            raise ctx.fail(where, f"case = {case!r}", f"use one of {', '.join(CASE_RULES)}")
        gpath = Path(item["file"])
        gpath = gpath if gpath.is_absolute() else base / gpath
        if not gpath.exists():
            raise ctx.fail(where, f"gazetteer file {gpath} not found",
                           "run `dvc pull data/gazetteers.dvc` or correct `file` (relative to the project root)")
        drop = ctx.compile(where + " drop_regex", item["drop_regex"]) if item.get("drop_regex") else None
        names, dropped = _read_gazetteer(ctx, where, gpath, item, drop)
        files.append(gpath)
        gazetteers.append(Gazetteer(gid, item["type"], gpath, names, case,
                                    ctx.int_(where, "priority", item.get("priority", 30)), dropped))

    exclusions: list[Exclusion] = []
    for i, item in enumerate(data.get("exclusions") or []):
        where = _where("exclusion", i, item)
        ctx.keys(where, item, _EXCL_KEYS, {"id", "regex"})
        eid = _id(ctx, where, item, seen)
        where = f"exclusion {eid!r}"
        match = item.get("match", "full")
        if match not in ("full", "overlap"):
            raise ctx.fail(where, f"match = {match!r}", "use `full` or `overlap`")
        etypes = [ctx.type_(where, t, type_names) for t in item.get("types") or []]
        flags = regex.IGNORECASE if item.get("ignore_case") else 0
        exclusions.append(Exclusion(eid, ctx.compile(where, item["regex"], flags), match, etypes))

    known_sources = {p.id for p in patterns} | {g.id for g in gazetteers}
    propagation: list[Propagation] = []
    for i, item in enumerate(data.get("propagation") or []):
        where = _where("propagation rule", i, item)
        ctx.keys(where, item, _PROP_KEYS, {"id", "type", "from"})
        rid = _id(ctx, where, item, seen)
        where = f"propagation rule {rid!r}"
        ctx.type_(where, item["type"], type_names)
        sources = item["from"] if isinstance(item["from"], list) else [item["from"]]
        for src in sources:
            if src not in known_sources:
                raise ctx.fail(where, f"`from` names {src!r}, which is no pattern or gazetteer id",
                               f"use ids listed under patterns/gazetteers ({', '.join(sorted(known_sources))})")
        take = ctx.compile(where + " take", item.get("take") or r"(?s).+")
        before = ctx.compile(where + " before", f"(?:{item['before']})\\Z") if item.get("before") else None
        after = ctx.compile(where + " after", item["after"]) if item.get("after") else None
        blocked = None
        if item.get("blocked_by") is not None:
            if not isinstance(item["blocked_by"], list):
                raise ctx.fail(where, "`blocked_by` is not a list", "write `blocked_by: [TAXON, CHRONO]` (types)")
            blocked = [ctx.type_(where, t, type_names) for t in item["blocked_by"]]
        propagation.append(Propagation(rid, item["type"], [str(x) for x in sources], take,
                                       ctx.int_(where, "min_length", item.get("min_length", 4), lo=1),
                                       ctx.int_(where, "priority", item.get("priority", 30)), before, after,
                                       blocked))

    stop = data.get("stoplist") or []
    if not isinstance(stop, list):
        raise ctx.fail("stoplist", "expected a list of words", "write `stoplist: [word, other words]`")
    return EntitySpec(path, types, patterns, gazetteers, exclusions, {str(s).lower() for s in stop}, files,
                      propagation)


def load_entity_types(path: str | Path) -> set[str]:
    """Only the entity type names of an entities file (no gazetteer is read): what the
    relations stage needs to validate its slots."""
    path = Path(path)
    ctx = _Ctx(path)
    data = ctx.keys("top level", _read_yaml(path, "entity"), _ENTITY_TOP, {"types"})
    types = data["types"]
    if isinstance(types, dict):
        types = list(types)
    if not isinstance(types, list) or not types:
        raise ctx.fail("types", "no entity types declared", "list the types, e.g. `types: {TAXON: {}, LOC: {}}`")
    _check_not_any(ctx, types)
    return {str(t) for t in types}


def load_relation_names(path: str | Path) -> list[str]:
    """Only the relation names a relations file declares (nothing compiled, no entity file
    needed): what the split stage needs to warn about a declared relation without examples."""
    path = Path(path)
    rels = _read_yaml(path, "relation").get("relations")
    if not isinstance(rels, dict) or not rels:
        raise _Ctx(path).fail("relations", "no relations declared",
                              "declare them, e.g. `relations: {found_at: {args: [[TAXON, LOC]], templates: [...]}}`")
    return [str(r) for r in rels]


def _read_gazetteer(ctx: _Ctx, where: str, gpath: Path, item: dict, drop: Any) -> tuple[list[str], int]:
    """Read one column of a TSV/CSV list, apply the filters, return (names, dropped count)."""
    delim = item.get("delimiter") or ("," if gpath.suffix.lower() == ".csv" else "\t")
    header = item.get("header", True)
    column = item.get("column", 0)
    where_filter = item.get("where") or {}
    if not isinstance(where_filter, dict):
        raise ctx.fail(where, "`where` must map a column to the value it must hold", "write `where: {0: LEXICON}`")
    min_len = ctx.int_(where, "min_length", item.get("min_length", 3))
    min_words = ctx.int_(where, "min_words", item.get("min_words", 1), lo=1)
    stop = {str(s).lower() for s in item.get("stoplist") or []}
    with open(gpath, encoding="utf-8", errors="replace", newline="") as fh:
        rows = list(csv.reader(fh, delimiter=delim, quoting=csv.QUOTE_NONE if delim == "\t" else csv.QUOTE_MINIMAL))
    head = rows[0] if header and rows else []

    def col_index(c: Any) -> int:
        if isinstance(c, int) and not isinstance(c, bool):
            return c
        if c in head:
            return head.index(c)
        raise ctx.fail(where, f"column {c!r} not in {gpath.name} (columns: {', '.join(head) or 'no header'})",
                       "name an existing column or give its 0-based index")

    ci = col_index(column)
    filters = [(col_index(k), str(v)) for k, v in where_filter.items()]
    names: list[str] = []
    seen: set[str] = set()
    dropped = 0
    for row in rows[1 if header else 0:]:
        if len(row) <= ci or any(len(row) <= k or row[k].strip() != v for k, v in filters):
            continue
        name = " ".join(row[ci].split())
        if not name or name in seen:
            continue
        seen.add(name)
        if (len(name) < min_len or len(name.split()) < min_words or name.lower() in stop
                or (drop is not None and drop.search(name))):
            dropped += 1
            continue
        names.append(name)
    return names, dropped


# --- relations -----------------------------------------------------------------

_REL_TOP = {"version", "description", "max_distance", "lookback", "inner_mentions", "macros", "relations", "vetoes"}
# A named piece of regex shared by templates: {@authority}. Macros may use earlier macros.
MACRO_RE = _re.compile(r"\{@([A-Za-z][A-Za-z0-9_]*)\}")
_REL_KEYS = {"description", "args", "priority", "max_distance", "inner_mentions", "templates", "negative_cues"}
_TPL_KEYS = {"id", "pattern", "priority", "ignore_case", "inner_mentions", "description"}
_NEG_KEYS = {"id", "pattern", "scope", "ignore_case", "description"}
_VETO_KEYS = {"id", "pattern", "scope", "ignore_case", "same_text", "relations", "kinds", "shape", "exclude",
              "subj_first", "description"}


def _spaces_to_whitespace(pattern: str) -> str:
    """A literal space in a template matches any run of whitespace (PDF text is ragged);
    spaces inside [...] classes or after a backslash are left alone."""
    out, in_class, esc = [], False, False
    for ch in pattern:
        if esc:
            out.append(ch)
            esc = False
        elif ch == "\\":
            out.append(ch)
            esc = True
        elif ch == "[":
            in_class = True
            out.append(ch)
        elif ch == "]":
            in_class = False
            out.append(ch)
        elif ch == " " and not in_class:
            out.append(r"\s+")
        else:
            out.append(ch)
    return "".join(out)


def load_relations_spec(path: str | Path, entity_types: set[str] | list[str]) -> RelationsSpec:
    """Load and validate a relations pattern file against the entity types of the domain."""
    path = Path(path)
    ctx = _Ctx(path)
    types = set(entity_types)
    _check_not_any(ctx, types)
    data = ctx.keys("top level", _read_yaml(path, "relation"), _REL_TOP, {"relations"})
    default_dist = ctx.int_("top level", "max_distance", data.get("max_distance", 200), lo=1)
    lookback = ctx.int_("top level", "lookback", data.get("lookback", DEFAULT_LOOKBACK))
    file_inner = ctx.choice("top level", "inner_mentions", data.get("inner_mentions", "type"), INNER_MENTIONS)
    macros = _load_macros(ctx, data.get("macros") or {})
    rels = data["relations"]
    if not isinstance(rels, dict) or not rels:
        raise ctx.fail("relations", "no relations declared", "add at least one relation with args and templates")
    seen: set[str] = set()
    out: dict[str, RelationSpec] = {}
    for name, spec in rels.items():
        where = f"relation {name!r}"
        if name == "NO_RELATION":
            raise ctx.fail(where, "NO_RELATION is implicit",
                           "remove it; to vote NO_RELATION write a rule under the top-level `vetoes:` list")
        ctx.keys(where, spec, _REL_KEYS, {"args", "templates"})
        args_raw = spec["args"]
        if (isinstance(args_raw, list) and len(args_raw) == 2 and all(isinstance(a, str) for a in args_raw)):
            args_raw = [args_raw]  # a single [SUBJ, OBJ] pair
        if not isinstance(args_raw, list) or not args_raw:
            raise ctx.fail(where, "args must be a list of [subject type, object type] pairs", "write `args: [[TAXON, LOC]]`")
        args: list[tuple[str, str]] = []
        for pair in args_raw:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise ctx.fail(where, f"args entry {pair!r} is not a pair", "write `[SUBJECT_TYPE, OBJECT_TYPE]`")
            subj, obj = (ctx.type_(f"{where} args", t, types, any_ok=True) for t in pair)
            for st in sorted(types) if subj == ANY else [subj]:  # ANY: one concrete pair per type
                for ot in sorted(types) if obj == ANY else [obj]:
                    if (st, ot) not in args:
                        args.append((st, ot))
        priority = ctx.int_(where, "priority", spec.get("priority", 10))
        max_dist = ctx.int_(where, "max_distance", spec.get("max_distance", default_dist), lo=1)
        inner = ctx.choice(where, "inner_mentions", spec.get("inner_mentions", file_inner), INNER_MENTIONS)
        templates = [
            tpl for i, t in enumerate(spec.get("templates") or [])
            for tpl in _compile_template(ctx, name, args, types, t, i, seen, priority, macros, inner)
        ]
        cues = []
        for i, c in enumerate(spec.get("negative_cues") or []):
            cw = _where("negative cue", i, c, f"relation {name!r} ")
            ctx.keys(cw, c, _NEG_KEYS, {"id", "pattern"})
            cid = _id(ctx, cw, c, seen)
            scope = c.get("scope", "between")
            if scope not in SCOPES:
                raise ctx.fail(f"negative cue {cid!r}", f"scope = {scope!r}", f"use one of {', '.join(SCOPES)}")
            flags = regex.IGNORECASE if c.get("ignore_case", True) else 0
            cues.append(NegativeCue(cid, name, ctx.compile(f"negative cue {cid!r}", c["pattern"], flags), scope))
        out[name] = RelationSpec(name, args, priority, max_dist, templates, cues, spec.get("description", ""), inner)
    vetoes = _load_vetoes(ctx, data.get("vetoes") or [], set(out), seen, macros)
    return RelationsSpec(path, out, types, default_dist, vetoes, lookback, file_inner)


def _load_vetoes(ctx: _Ctx, raw: Any, relations: set[str], seen: set[str], macros: dict[str, str]) -> list[Veto]:
    if not isinstance(raw, list):
        raise ctx.fail("vetoes", "expected a list of rules", "write `vetoes:` then `- id: ...` items")
    out: list[Veto] = []
    for i, v in enumerate(raw):
        where = _where("veto", i, v)
        ctx.keys(where, v, _VETO_KEYS, {"id"})
        vid = _id(ctx, where, v, seen)
        where = f"veto {vid!r}"
        scope = v.get("scope", "between")
        if scope not in VETO_SCOPES:
            raise ctx.fail(where, f"scope = {scope!r}", f"use one of {', '.join(VETO_SCOPES)}")
        rels = v.get("relations") or []
        if isinstance(rels, str):
            rels = [rels]
        for r in rels:
            if r not in relations:
                raise ctx.fail(where, f"relations names {r!r}, which is not a relation of this file",
                               f"use some of {', '.join(sorted(relations))} or leave `relations` out (every relation)")
        same = v.get("same_text")
        if same is not None and not isinstance(same, bool):
            raise ctx.fail(where, f"same_text = {same!r}", "write `same_text: true` (or false) or leave it out")
        kinds = v.get("kinds") or []
        if isinstance(kinds, str):
            kinds = [kinds]
        shape = _load_shape(ctx, where, v["shape"]) if "shape" in v else None
        exclude = v.get("exclude", False)
        if not isinstance(exclude, bool):
            raise ctx.fail(where, f"exclude = {exclude!r}", "write `exclude: true` (its pairs are not annotated) or leave it out")
        subj_first = v.get("subj_first")
        if subj_first is not None and not isinstance(subj_first, bool):
            raise ctx.fail(where, f"subj_first = {subj_first!r}",
                           "write `subj_first: true` (the subject comes first in the text), false, or leave it out")
        if "pattern" not in v and same is None and not kinds and shape is None:
            raise ctx.fail(where, "no condition",
                           "give it a `pattern` (with a `scope`), `same_text: true`, `kinds` or a `shape`")
        rx = None
        if "pattern" in v:
            pattern = v["pattern"]
            if not isinstance(pattern, str) or not pattern:
                raise ctx.fail(where, "the regex is empty or not a string", "quote the regex in single quotes")
            if SLOT_RE.search(pattern):
                raise ctx.fail(where, "a veto pattern has no typed slots", "match the scope's text; use `<TYPE>` for inner mentions")
            pattern = _expand_macros(ctx, where, pattern, macros)
            flags = regex.IGNORECASE if v.get("ignore_case", False) else 0
            rx = ctx.compile(where, _spaces_to_whitespace(pattern), flags)
        out.append(Veto(vid, [str(r) for r in rels], rx, scope, same, [str(k) for k in kinds],
                        v.get("pattern", ""), v.get("description", ""), shape, exclude, subj_first))
    return out


def _load_shape(ctx: _Ctx, where: str, raw: Any) -> TextShape:
    where = f"{where}: shape"
    if not isinstance(raw, dict) or not raw:
        raise ctx.fail(where, "expected a mapping of thresholds",
                       "write e.g. `shape: {min_tokens: 12, terminated: false}`")
    ctx.keys(where, raw, _SHAPE_KEYS)
    mt = raw.get("min_tokens", 1)
    if isinstance(mt, bool) or not isinstance(mt, int) or mt < 1:
        raise ctx.fail(where, f"min_tokens = {mt!r}", "use a whole number >= 1, e.g. 12")
    term = raw.get("terminated")
    if term is not None and not isinstance(term, bool):
        raise ctx.fail(where, f"terminated = {term!r}",
                       "write `terminated: false` (text not ending in . ? !), true, or leave it out")
    shares = {}
    for key in ("min_digit_share", "min_capital_share", "max_function_share"):
        x = raw.get(key)
        if x is not None and (isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 <= x <= 1):
            raise ctx.fail(where, f"{key} = {x!r}", "use a share between 0 and 1, e.g. 0.3")
        shares[key] = None if x is None else float(x)
    words = raw.get("function_words") or []
    if not isinstance(words, list) or not all(isinstance(w, str) and w for w in words):
        raise ctx.fail(where, "function_words must be a list of words", "write `function_words: [the, of, and, in]`")
    if shares["max_function_share"] is not None and not words:
        raise ctx.fail(where, "max_function_share needs the words it counts",
                       "add `function_words: [the, of, and, in, ...]` (your language's articles, prepositions, conjunctions)")
    if len(raw) == 1 and "function_words" in raw:
        raise ctx.fail(where, "function_words alone is no condition", "add `max_function_share` (or another threshold)")
    return TextShape(mt, term, shares["min_digit_share"], shares["min_capital_share"], shares["max_function_share"],
                     frozenset(w.casefold() for w in words))


def _expand_macros(ctx: _Ctx, where: str, pattern: str, macros: dict[str, str]) -> str:
    def sub(m: _re.Match) -> str:
        if m.group(1) not in macros:
            raise ctx.fail(where, f"unknown macro {{@{m.group(1)}}}",
                           f"define it under `macros:` or use one of {', '.join(sorted(macros)) or '(none defined)'}")
        return f"(?:{macros[m.group(1)]})"
    return MACRO_RE.sub(sub, pattern)


def _load_macros(ctx: _Ctx, raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise ctx.fail("macros", "expected a mapping of name: regex", "write `macros: {authority: '...'}`")
    macros: dict[str, str] = {}
    for name, body in raw.items():
        where = f"macro {name!r}"
        if not isinstance(name, str) or not _re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            raise ctx.fail(where, "bad macro name", "use letters, digits and _ (e.g. authority)")
        if not isinstance(body, str) or not body:
            raise ctx.fail(where, "the regex is empty or not a string", "quote the regex in single quotes")
        if SLOT_RE.search(body):
            raise ctx.fail(where, "a macro may not contain a typed slot", "keep {TYPE} slots in the templates")
        body = _expand_macros(ctx, where, body, macros)
        ctx.compile(where, body)
        macros[name] = body
    return macros


def _roles(args: list[tuple[str, str]], ta: str, tb: str, ra: str | None, rb: str | None) -> tuple[str, str] | None:
    """The (subj/obj) role of each slot in text order, or None when no allowed pair fits.
    Explicit roles win; else the slot whose type is the subject type of an allowed pair."""
    if ra is None and rb is None:
        if (ta, tb) in args:
            ra, rb = "subj", "obj"
        elif (tb, ta) in args:
            ra, rb = "obj", "subj"
        else:
            return None
    elif ra is None:
        ra = "obj" if rb == "subj" else "subj"
    elif rb is None:
        rb = "obj" if ra == "subj" else "subj"
    subj_t, obj_t = (ta, tb) if ra == "subj" else (tb, ta)
    return (ra, rb) if (subj_t, obj_t) in args else None


def _compile_template(ctx: _Ctx, rel: str, args: list[tuple[str, str]], types: set[str], t: Any, i: int,
                      seen: set[str], rel_priority: int, macros: dict[str, str] | None = None,
                      rel_inner: str = "type") -> list[Template]:
    """One Template per concrete pair of slot types: one for a template of two typed slots,
    one per type the relation's args allow for an {ANY} slot (all sharing the compiled regexes)."""
    where = _where("template", i, t, f"relation {rel!r} ")
    ctx.keys(where, t, _TPL_KEYS, {"id", "pattern"})
    tid = _id(ctx, where, t, seen)
    where = f"template {tid!r}"
    pattern = t["pattern"]
    if not isinstance(pattern, str):
        raise ctx.fail(where, "pattern is not a string", "quote the template in single quotes")
    pattern = _expand_macros(ctx, where, pattern, macros or {})
    slots = list(SLOT_RE.finditer(pattern))
    for m in slots:
        if m.group(1) not in types and m.group(1) != ANY:
            raise ctx.fail(where, f"slot {{{m.group(1)}}} names a type the schema lacks",
                           f"use one of {', '.join('{' + x + '}' for x in sorted(types))} or {{{ANY}}}")
        if m.group(2) is not None and m.group(2) not in ROLES:
            raise ctx.fail(where, f"slot role {m.group(2)!r}", "write {TYPE:subj} or {TYPE:obj}")
    if len(slots) != 2:
        raise ctx.fail(where, f"{len(slots)} slot(s)", "a template needs exactly two typed slots, e.g. `{TAXON} from {LOC}`")
    (a, b) = slots
    ta, tb = a.group(1), b.group(1)
    ra, rb = a.group(2), b.group(2)
    if ra is not None and ra == rb:
        raise ctx.fail(where, "both slots have the same role", "mark one slot :subj and the other :obj")
    allowed = ", ".join(f"({s}, {o})" for s, o in args)
    bound: list[tuple[tuple[str, str], tuple[str, str]]] = []
    for x in sorted(types) if ta == ANY else [ta]:
        for y in sorted(types) if tb == ANY else [tb]:
            roles = _roles(args, x, y, ra, rb)
            if roles is not None:
                bound.append(((x, y), roles))
    if not bound:
        if ra is None and rb is None:
            raise ctx.fail(where, f"slots {{{ta}}} and {{{tb}}} but relation {rel!r} allows only {allowed}",
                           "change the slot types, or add the pair to args")
        if ANY in (ta, tb):
            raise ctx.fail(where, f"the slots' types and roles bind no pair relation {rel!r} allows ({allowed})",
                           "change the slot types or roles, or add the pair to args")
        first_is_subj = ra == "subj" if ra is not None else rb == "obj"
        subj_t, obj_t = (ta, tb) if first_is_subj else (tb, ta)
        raise ctx.fail(where, f"slots bind ({subj_t}, {obj_t}) but relation {rel!r} allows only {allowed}",
                       "change the slot types or roles, or add the pair to args")
    flags = regex.IGNORECASE if t.get("ignore_case", False) else 0
    inner = ctx.choice(where, "inner_mentions", t.get("inner_mentions", rel_inner), INNER_MENTIONS)
    parts = [pattern[: a.start()], pattern[a.end(): b.start()], pattern[b.end():]]
    parts = [_spaces_to_whitespace(p) for p in parts]
    # The prefix and the middle are matched in the sentence itself, from where they may start to
    # one character past where they must end: `(?=.\Z)` pins that end, and `\b` or a look-around
    # at either edge sees the mention next to it (the text past the end bound stays invisible).
    end = r"(?=(?s:.)\Z)"
    prefix = ctx.compile(where, f"(?:{parts[0]}){end}", flags) if parts[0].strip() else None
    gap = parts[1] or r"\s*"
    middle = ctx.compile(where, f"(?:{gap}){end}", flags)
    suffix = ctx.compile(where, parts[2], flags) if parts[2].strip() else None
    priority = ctx.int_(where, "priority", t.get("priority", rel_priority))
    return [Template(tid, rel, tys, roles, prefix, middle, suffix, priority, t["pattern"], inner)
            for tys, roles in bound]


def schema_args(relation_patterns: str | Path, entity_patterns: str | Path) -> dict[str, list[list[str]]]:
    """relation -> allowed [subject type, object type] pairs, from the pattern files (validates both)."""
    spec = load_relations_spec(relation_patterns, load_entity_types(entity_patterns))
    return {name: [list(a) for a in rel.args] for name, rel in spec.relations.items()}
