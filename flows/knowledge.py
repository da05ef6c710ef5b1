"""Prefect flow `knowledge`: build knowledge files (subject,relation,object CSV) from the
gazetteers named in params (``knowledge.sources``) into ``knowledge.out_dir``, for the label
model's distant supervision (``label_model.knowledge``).

    python -m flows.knowledge [--params params.yaml]
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from prefect import flow

from flows.common import cli_args, load_params, new_tmp_dir, run_main, swap_dir
from stages.knowledge import KnowledgeParams, build_rows, to_csv
from stages.records import atomic_write_text

log = logging.getLogger("relmine.knowledge")


@flow(name="knowledge")
def knowledge_flow(params_path: str | None = None) -> dict:
    p: KnowledgeParams = load_params(KnowledgeParams, "knowledge", params_path)
    out = Path(p.out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_tmp_dir(out)
    counts = {}
    try:
        for s in p.sources:
            rows = build_rows(s)
            atomic_write_text(tmp / f"{s['name']}.csv", to_csv(rows))
            counts[s["name"]] = len(rows)
            log.info("knowledge %s: %d facts from %s", s["name"], len(rows), s["file"])
        swap_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return counts


def main() -> None:
    args = cli_args("Build knowledge files (subject,relation,object) from the gazetteers.")
    run_main(knowledge_flow, args.params)


if __name__ == "__main__":
    main()
