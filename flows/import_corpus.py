"""Prefect flow ``import``: a corpus with its mentions (and relations) already marked ->
relmine's records.

    python -m flows.import_corpus [--params params.yaml]

Reads ``importer.input`` in ``importer.format`` (jsonl | brat | bioc: stages/importers.py)
and writes

* ``importer.out_dir/<doc_id>.jsonl``: AnnotatedSentence records with the given mentions.
  Point ``entities.mined_dir`` there and set ``entities.given: only`` (or
  ``plus_patterns`` to add what the entity patterns find) to run the pipeline on it;
* ``importer.gold_dir/<importer.name>.jsonl`` (when ``importer.gold``): one gold Example per
  candidate pair with the corpus's label, for ``evaluate`` (and for training only when
  ``split.train_on_gold``);
* ``importer.report``: counts, and every dropped record by reason with where it was first seen.

Types and labels are checked against the pattern files before anything is written.
"""
from __future__ import annotations

import logging
import shutil
from collections import Counter
from pathlib import Path

from prefect import flow

from flows.common import cli_args, load_params, new_tmp_dir, run_main, swap_dir
from stages.errors import InputError
from stages.importers import ImportParams, annotated_sentences, gold_examples, read_corpus, rename
from stages.patterns import load_entity_types, load_relations_spec, schema_args
from stages.records import NO_RELATION, atomic_write_json, to_dict, write_jsonl
from stages.relations import RelationLabeller, count_beyond

log = logging.getLogger("relmine.import")


@flow(name="import")
def import_flow(params_path: str | None = None) -> dict:
    p: ImportParams = load_params(ImportParams, "importer", params_path)
    allowed = schema_args(p.relation_patterns, p.entity_patterns)
    result = read_corpus(p.format, p.input)
    if not result.sentences:
        raise InputError(f"{p.input}: no sentence could be read; fix: check importer.format ({p.format})")
    rename(result, p.type_map, p.label_map, load_entity_types(p.entity_patterns), set(allowed))
    docs = annotated_sentences(result.sentences, p.format)

    out = Path(p.out_dir)
    tmp = new_tmp_dir(out)
    try:
        for doc_id, sents in docs.items():
            write_jsonl(tmp / f"{doc_id}.jsonl", sents)
        swap_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report = {
        "format": p.format, "input": p.input, "documents": len(docs), "sentences": len(result.sentences),
        "mentions": sum(len(s.mentions) for s in result.sentences),
        "mentions_per_type": dict(sorted(Counter(m.type for s in result.sentences for m in s.mentions).items())),
        "relations": sum(len(s.relations) for s in result.sentences),
        "dropped": dict(result.problems), "dropped_first_seen": result.examples_of_problems,
        "out_dir": p.out_dir,
    }
    if p.gold:
        examples = gold_examples(result.sentences, allowed, p.labelled_only)
        gold_file = Path(p.gold_dir) / f"{p.name}.jsonl"
        write_jsonl(gold_file, [to_dict(e) for e in examples])
        report |= {"gold_file": str(gold_file), "gold_pairs": len(examples),
                   "gold_labels": dict(sorted(Counter(e.label for e in examples).items()))}
        spec = load_relations_spec(p.relation_patterns, load_entity_types(p.entity_patterns))
        far = count_beyond(RelationLabeller(spec), [e for e in examples if e.label != NO_RELATION])
        report["labelled_pairs_beyond_max_distance"] = far
        if far:
            log.warning("import: %d labelled pairs (%s) lie farther apart than max_distance: the relations stage makes "
                        "no candidate of them (the gold file keeps them); fix: raise max_distance in %s",
                        sum(far.values()), ", ".join(f"{k} {v}" for k, v in far.items()), p.relation_patterns)
    atomic_write_json(p.report, report)
    log.info("import: %d documents, %d sentences, %d mentions, %d relations from %s (%s)%s", report["documents"],
             report["sentences"], report["mentions"], report["relations"], p.input, p.format,
             f"; {report['gold_pairs']} gold pairs -> {report['gold_file']}" if p.gold else "")
    for reason, n in result.problems.most_common():
        log.warning("import: %d dropped: %s (first: %s)", n, reason, result.examples_of_problems[reason])
    return report


def main() -> None:
    args = cli_args("Import a corpus with marked mentions/relations (jsonl, BRAT, BioC) into relmine's records.")
    run_main(import_flow, args.params)


if __name__ == "__main__":
    main()
