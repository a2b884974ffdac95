"""`electra-vocab`: train a WordPiece vocab on cleaned text and merge it with KoELECTRA's.

    electra-vocab [--vocab-size 30000] [--merge-with PATH|none] INPUT... OUT_DIR

The command line of `vocab_train.run` (what it trains and writes is described there).
"""
from __future__ import annotations


from data_prep.pretokenize import PRETOKENIZERS
from data_prep.vocab_train import DEFAULT_MERGE_VOCAB, VocabConfig, run
from foundation import console
from foundation.errors import run_cli


def parse_args(argv: list[str] | None = None) -> VocabConfig:
    p = console.parser(prog="electra-vocab", description="Train a WordPiece vocab on cleaned text.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="INPUT... OUT_DIR: cleaned text files/directories, then the output directory")
    p.add_argument("--vocab-size", type=int, default=30_000, help="size of the trained vocab (before merging)")
    p.add_argument("--limit-alphabet", type=int, default=6000, help="most distinct characters kept in the alphabet")
    p.add_argument("--min-frequency", type=int, default=2, help="a merge must occur at least this often")
    p.add_argument("--lowercase", action="store_true", help="lower-case (not for Korean)")
    p.add_argument("--strip-accents", action="store_true", help="strip accents (not for Korean: decomposes Hangul)")
    p.add_argument("--pretokenizer", choices=PRETOKENIZERS, default="bert", help="mecab: split morphemes first")
    p.add_argument("--max-input-chars-per-word", type=int, default=100, help="longer words become [UNK]")
    p.add_argument("--merge-with", default=DEFAULT_MERGE_VOCAB,
                   help="vocab to merge with ('none': do not merge) (default: the bundled KoELECTRA v1 vocab, "
                        "data/vocab/koelectra_v1_vocab.txt)")
    p.add_argument("--num-unused", type=int, default=0, help="[unusedN] slots at the end")
    p.add_argument("--heldout-every", type=int, default=100, help="hold out every n-th line for the report (0: none)")
    p.add_argument("--max-heldout-lines", type=int, default=10_000, help="held-out lines at most")
    p.add_argument("--overwrite", action="store_true", help="rebuild even if OUT_DIR holds the same finished build")
    a = p.parse_args(argv)
    if len(a.paths) < 2:
        p.error("give at least one input and an output directory")
    return VocabConfig(
        inputs=tuple(a.paths[:-1]),
        output=a.paths[-1],
        vocab_size=a.vocab_size,
        limit_alphabet=a.limit_alphabet,
        min_frequency=a.min_frequency,
        do_lower_case=a.lowercase,
        strip_accents=a.strip_accents,
        pretokenizer=a.pretokenizer,
        max_input_chars_per_word=a.max_input_chars_per_word,
        merge_with=None if a.merge_with.lower() == "none" else a.merge_with,
        num_unused=a.num_unused,
        heldout_every=a.heldout_every,
        max_heldout_lines=a.max_heldout_lines,
        overwrite=a.overwrite,
    )


def main(argv: list[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


def cli() -> None:
    run_cli(main)
