"""`electra-build-data`'s worker: one shard from its byte ranges (read, tokenise, pack, write),
its result file for resuming, and the pool that runs the shards with a progress bar.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import multiprocessing
from typing import Iterable, Iterator, NamedTuple, Sequence

from data_prep import packing, records, tokenization, vocab_files
from data_prep.records_plan import BuildConfig, Span, read_span
from foundation import console, fileio

BATCH_LINES = 2048
STATE_DIR = "_build"  # progress of a build until its manifest is written


class ShardTask(NamedTuple):
    index: int
    num_shards: int
    spans: tuple[Span, ...]


class ShardResult(NamedTuple):
    index: int
    examples: int
    tokens: int
    cut_tokens: int = 0  # tokens of lines longer than an example that the packing trim dropped


def document_examples(
    tokenizer: tokenization.Tokenizer, sentences: Iterable[Sequence[int]], first_line: bytes, max_seq_length: int,
    seed: int,
) -> Iterator[tuple[bytes, int, int]]:
    """A document's serialised examples, their real-token counts and the tokens their trim cut
    (packed with its own random stream)."""
    t = tokenizer
    for features, tokens, cut in packing.document_features(
        sentences, first_line, max_seq_length, seed, t.cls_id, t.sep_id, t.pad_id
    ):
        yield records.encode_example(*features), tokens, cut


def stats_path(output_dir: str, index: int, num_shards: int) -> str:
    """Where a finished shard's `ShardResult` is kept until the manifest is written."""
    return fileio.join(output_dir, STATE_DIR, f"shard-{index}-of-{num_shards}.json")


def finished_shards(output_dir: str, num_shards: int) -> dict[int, ShardResult]:
    """The shards an earlier (interrupted) run finished: the shard file and a readable result are
    there (a damaged result only means that shard is built again)."""
    done = {}
    shards = set(fileio.glob(fileio.join(output_dir, records.SHARD_PREFIX + "-*")))
    for i in range(num_shards):
        stats = stats_path(output_dir, i, num_shards)
        if fileio.join(output_dir, records.shard_name(i, num_shards)) in shards and fileio.exists(stats):
            with fileio.open_read(stats) as fh:
                try:
                    done[i] = ShardResult(**json.loads(fh.read()))
                except (ValueError, TypeError):  # not UTF-8 or not JSON: a ValueError too
                    continue
    return done


class ShardBuilder:
    """What a worker needs, loaded once per process: the tokenizer and the settings."""

    def __init__(self, cfg: BuildConfig, settings: vocab_files.VocabSettings):
        self.cfg = cfg
        self.tokenizer = tokenization.load_tokenizer(cfg.vocab_file, settings, cfg.tokenizer)

    def _sentences(self, spans: Iterable[Span]) -> Iterator[tuple[tuple[int, int], bytes, list[int]]]:
        """((span, document), document's first line, ids) per line, tokenised in batches."""
        lines = (
            ((i, doc), first, text)
            for i, span in enumerate(spans)
            for doc, first, text in read_span(span, self.cfg.blanks_separate_docs)
        )
        while batch := list(itertools.islice(lines, BATCH_LINES)):
            ids = self.tokenizer.encode_batch([text for _, _, text in batch])
            yield from ((key, first, sentence) for (key, first, _), sentence in zip(batch, ids))

    def build(self, task: ShardTask) -> ShardResult:
        cfg = self.cfg
        tokens = cut_tokens = 0

        def serialized() -> Iterator[bytes]:
            nonlocal tokens, cut_tokens
            for (_, first), group in itertools.groupby(self._sentences(task.spans), key=lambda s: s[:2]):
                sentences = (ids for *_, ids in group)
                for example, n, cut in document_examples(self.tokenizer, sentences, first, cfg.max_seq_length,
                                                         cfg.seed):
                    tokens += n
                    cut_tokens += cut
                    yield example

        path = fileio.join(cfg.output_dir, records.shard_name(task.index, task.num_shards))
        count = records.write_shard(path, serialized())
        result = ShardResult(task.index, count, tokens, cut_tokens)
        fileio.write_text(stats_path(cfg.output_dir, task.index, task.num_shards),
                          json.dumps(result._asdict(), indent=2, sort_keys=True) + "\n")
        return result


_WORKER: ShardBuilder | None = None


def _init_worker(cfg: BuildConfig, settings: vocab_files.VocabSettings) -> None:
    global _WORKER
    _WORKER = ShardBuilder(cfg, settings)


def _build_in_worker(task: ShardTask) -> ShardResult:
    assert _WORKER is not None
    return _WORKER.build(task)


def run_shards(cfg: BuildConfig, settings: vocab_files.VocabSettings, tasks: list[ShardTask]) -> list[ShardResult]:
    """Build the shards, in this process or a pool; the progress bar (input bytes) moves as
    shards finish."""
    def task_bytes(task: ShardTask) -> int:
        return sum((s.end if s.end is not None else fileio.size(s.path)) - s.start for s in task.spans)

    sizes = {t.index: task_bytes(t) for t in tasks}
    results: list[ShardResult] = []
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(console.progress(total=sum(sizes.values()), unit="B", unit_scale=True, desc="build"))
        if cfg.num_processes == 1 or len(tasks) == 1:
            finished: Iterable[ShardResult] = map(ShardBuilder(cfg, settings).build, tasks)
        else:
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(  # no fork after TF threads
                min(cfg.num_processes, len(tasks)),
                initializer=_init_worker,
                initargs=(cfg, settings),
                maxtasksperchild=cfg.files_per_process or None,
            ))
            finished = pool.imap_unordered(_build_in_worker, tasks)
        for result in finished:
            results.append(result)
            bar.update(sizes[result.index])
            bar.set_postfix_str(f"{sum(r.examples for r in results):,} examples", refresh=False)
    return results
