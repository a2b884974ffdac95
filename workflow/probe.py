"""Downstream probe: does pretraining help? NSMC sentiment, pretrained vs. random init, with a protocol.

Fine-tunes an exported folder with `transformers` `ElectraForSequenceClassification` (PyTorch,
CPU) on labelled NSMC rows and scores it on the test rows, next to the same architecture started
from random weights. The protocol a reviewer can accept: the fine-tuning learning rate is chosen
per arm from `lr_grid` on dev rows carved from the *train* file (never on the test rows), then
each arm is fine-tuned with `seeds` seeds and reported as mean and standard deviation. Beside it,
two signals that need no fine-tuning: a linear probe on frozen mean-pooled features, and the
held-out intrinsic metrics of `workflow.intrinsic` with their trivial baselines.
Works on any exported folder: a discriminator (its generator is found beside it) or, for an
MLM-only run, a generator.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np

import electra_data
from foundation import console, fileio
from foundation.errors import UserError, run_cli
from workflow import finetune, intrinsic
from workflow.labelled_rows import Split, read_split, split_train_dev

DEFAULT_TRAIN = os.path.join(electra_data.SENTIMENT_DIR, "train.tsv")
DEFAULT_TEST = os.path.join(electra_data.SENTIMENT_DIR, "test.tsv")
# The first look's grid (shared/measurements): both arms' best rates lay inside it at 1,000-4,000 rows.
FAIR_LR_GRID = (1e-4, 3e-4, 1e-3, 3e-3)
FROZEN_L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)
FROZEN_L2 = 1e-3  # without dev rows


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """How the probe fine-tunes. Defaults (one rate, one seed) take 1-2 minutes for the demo's model on
    2 cores; `--fair` sets the protocol: FAIR_LR_GRID on 1,000 dev rows, 3 seeds."""

    max_train_rows: int = 4000  # 0 = all rows of the file (less the dev rows)
    dev_rows: int = 0  # carved from the train file, after the train rows; needed by lr_grid
    max_test_rows: int = 0  # 0 = all rows of the file
    max_seq_length: int = 64  # NSMC reviews are short: 64 tokens cover nearly all
    epochs: int = 3  # ELECTRA's fine-tuning recipe: 3 epochs
    batch_size: int = 32
    # ELECTRA-Small (hidden 256) fine-tunes at 3e-4; the demo's hidden-64 model barely leaves its pretrained
    # weights at that rate (measured: train loss 0.57 vs 0.34 from random init), at 1e-3 both fit and the
    # random-init baseline is unchanged (0.771-0.778 vs 0.760-0.771)
    learning_rate: float = 1e-3  # used when lr_grid is empty
    lr_grid: tuple[float, ...] = ()  # chosen per arm on the dev rows
    # fine-tuning protocols (finetune.PROTOCOLS), chosen per arm on the dev rows together with the rate
    protocols: tuple[str, ...] = ("plain",)
    layer_decay: float = finetune.LAYER_DECAY  # llrd
    lp_epochs: int = 1  # lpft: epochs of the head alone before fine-tuning
    lp_learning_rate: float = 3e-3  # lpft: the head's rate in that stage
    seeds: int = 1  # fine-tuning seeds per arm (head init, dropout, batch order; random init's weights)
    warmup_fraction: float = 0.1  # of all steps: linear warmup, then linear decay to 0
    seed: int = 42  # the first seed; the others are seed+1, seed+2, ...
    # Models this small gain little from intra-op threads, and on a shared machine OpenMP
    # threads wait on each other: 1 thread ran 6x faster than 2 under load here.
    num_threads: int = 1
    # fine-tunes at once, each in its own process with `num_threads` threads: the protocol's runs (rates x
    # protocols, then seeds) are independent, so they can run side by side on several cores
    jobs: int = 1
    frozen: bool = True  # linear probe on frozen mean-pooled features
    intrinsic: bool = True  # held-out generator top-1 / discriminator AUC against their baselines
    # off: score only the pretrained arm (many checkpoints of one architecture against one random-init run)
    random_init: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "num_threads", "seeds", "jobs"):
            if getattr(self, name) < 1:
                raise UserError(f"probe {name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_train_rows", "max_test_rows", "dev_rows"):
            if getattr(self, name) < 0:
                raise UserError(f"probe {name} must be >= 0 (0 = all), got {getattr(self, name)}")
        if self.max_seq_length < 3:
            raise UserError(f"probe max_seq_length must be >= 3 ([CLS] text [SEP]), got {self.max_seq_length}")
        for rate in (self.learning_rate, *self.lr_grid):
            if not rate > 0:
                raise UserError(f"probe learning_rate must be > 0, got {rate}")
        if self.lr_grid and not self.dev_rows:
            raise UserError("probe lr_grid needs dev_rows > 0: rates are chosen on dev rows, never on test rows")
        unknown = [p for p in self.protocols if p not in finetune.PROTOCOLS]
        if unknown or not self.protocols:
            raise UserError(f"probe protocols must be some of {', '.join(finetune.PROTOCOLS)}, got "
                            f"{', '.join(self.protocols) or 'none'}")
        if len(self.protocols) > 1 and not self.dev_rows:
            raise UserError("probe protocols (more than one) need dev_rows > 0: they are chosen on dev rows")
        if not 0 < self.layer_decay <= 1:
            raise UserError(f"probe layer_decay must be in (0, 1], got {self.layer_decay}")
        if self.lp_epochs < 1 or not self.lp_learning_rate > 0:
            raise UserError(f"probe lp_epochs must be >= 1 and lp_learning_rate > 0, got {self.lp_epochs}, "
                            f"{self.lp_learning_rate}")
        if not 0 <= self.warmup_fraction < 1:
            raise UserError(f"probe warmup_fraction must be in [0, 1), got {self.warmup_fraction}")


def fair(config: ProbeConfig = ProbeConfig(), **changes: Any) -> ProbeConfig:
    """The reviewer's protocol: FAIR_LR_GRID chosen on 1,000 dev rows, 3 seeds."""
    return dataclasses.replace(config, **{"lr_grid": FAIR_LR_GRID, "dev_rows": 1000, "seeds": 3, **changes})


class Arm(NamedTuple):
    """One arm (pretrained or random init) of the fine-tuning protocol."""

    learning_rate: float  # the rate chosen on dev (the only one without a grid)
    dev_accuracy: dict[str, float]  # by rate ("protocol rate" with several protocols), seed `config.seed`
    accuracies: list[float]  # test accuracy per seed
    train_loss: float  # mean over seeds of the last epoch's mean loss
    protocol: str = "plain"  # the fine-tuning protocol chosen on dev (finetune.PROTOCOLS)

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        return float(np.std(self.accuracies, ddof=1)) if len(self.accuracies) > 1 else 0.0


class ProbeResult(NamedTuple):
    pretrained_accuracy: float  # mean over seeds
    pretrained_std: float
    random_init_accuracy: float | None  # None: --no-random-init
    random_init_std: float | None
    majority_accuracy: float  # always predicting the test set's most frequent label
    pretrained: dict  # Arm as a dict: chosen rate, dev accuracies, per-seed accuracies, train loss
    random_init: dict | None
    frozen: dict | None  # linear probe on frozen features: pretrained / random init (per seed) accuracies
    intrinsic: dict | None  # workflow.intrinsic.Intrinsic
    train_rows: int
    dev_rows: int
    test_rows: int
    steps: int  # fine-tuning steps of one run
    seconds: float

    def to_dict(self) -> dict:
        return self._asdict()


def _check_model_dir(model_dir: str) -> None:
    if not os.path.isdir(model_dir):
        raise UserError(f"model folder not found: {model_dir}")
    if not os.path.exists(os.path.join(model_dir, "config.json")):
        raise UserError(f"{model_dir} is not a Hugging Face model folder: no config.json (make one with electra-export)")
    if not any(os.path.exists(os.path.join(model_dir, n)) for n in ("tokenizer.json", "vocab.txt")):
        raise UserError(f"{model_dir} has no tokenizer (tokenizer.json or vocab.txt)")



def run_probe(model_dir: str, train_tsv: str, test_tsv: str, config: ProbeConfig = ProbeConfig(),
              generator_dir: str | None = None) -> ProbeResult:
    """Score the folder's encoder against random init (see the module docstring for the protocol).

    `generator_dir` (default: `generator/` beside a discriminator folder) feeds the intrinsic metrics.
    """
    _check_model_dir(model_dir)
    wanted = config.max_train_rows + config.dev_rows if config.max_train_rows else 0
    train, dev = split_train_dev(read_split(train_tsv, wanted), config.max_train_rows, config.dev_rows, train_tsv)
    test = read_split(test_tsv, config.max_test_rows)

    import torch
    import transformers

    transformers.logging.set_verbosity_error()  # "newly initialised classifier" is the point here
    start = time.time()
    threads = torch.get_num_threads()
    torch.set_num_threads(config.num_threads)
    try:
        return _probe(model_dir, generator_dir, train, dev, test, config, start)
    finally:
        torch.set_num_threads(threads)


def dev_key(protocol: str, rate: float, config: ProbeConfig) -> str:
    """The dev-accuracy key of one setting: the rate alone with one protocol (as before protocols existed)."""
    return f"{rate:g}" if len(config.protocols) == 1 else f"{protocol} {rate:g}"


class ModelSource(NamedTuple):
    """How one arm's classifier is built (picklable: a fine-tune may run in a worker process)."""

    model_dir: str
    config: Any  # transformers ElectraConfig with num_labels
    pretrained: bool  # False: the same architecture from random weights

    def make(self, seed: int):
        import torch
        from transformers import ElectraForSequenceClassification

        torch.manual_seed(seed)  # the classifier head starts the same in both arms
        if self.pretrained:
            return ElectraForSequenceClassification.from_pretrained(self.model_dir, config=self.config)
        return ElectraForSequenceClassification(self.config)


class Rows(NamedTuple):
    """The token ids and labels of each split ("train", "dev", "test"), shared by every fine-tune."""

    ids: dict[str, list]
    labels: dict[str, list[int]]
    pad_id: int


_ROWS: Rows | None = None  # this process's rows: set once per worker (or in-process) by `_use_rows`


def _use_rows(rows: Rows, threads: int) -> None:
    global _ROWS
    import torch
    import transformers

    _ROWS = rows
    torch.set_num_threads(threads)
    transformers.logging.set_verbosity_error()


def _start_worker(rows: Rows, threads: int) -> None:
    """A worker's set-up: no per-step bars (the parent shows one line per finished fine-tune); tqdm reads
    TQDM_DISABLE when imported, which is after this in a spawned process."""
    os.environ["TQDM_DISABLE"] = "1"
    _use_rows(rows, threads)


def _accuracy(model, split: str, batch_size: int) -> float:
    predictions = finetune.predict(model, _ROWS.ids[split], _ROWS.pad_id, batch_size)
    return float(np.mean(predictions == np.asarray(_ROWS.labels[split])))


def _fine_tune(task: tuple) -> tuple[float, float, dict | None]:
    """One fine-tune: (accuracy on `split`, last epoch's loss, the weights if `keep`)."""
    source, protocol, rate, seed, config, split, keep = task
    model = source.make(seed)
    cfg = dataclasses.replace(config, learning_rate=rate, seed=seed)
    loss = finetune.fine_tune(model, _ROWS.ids["train"], _ROWS.labels["train"], _ROWS.pad_id, cfg, protocol)
    return _accuracy(model, split, config.batch_size), loss, (model.state_dict() if keep else None)


@contextlib.contextmanager
def _runner(rows: Rows, config: ProbeConfig) -> Iterator[Callable]:
    """A `map` over fine-tune tasks: in this process, or `config.jobs` worker processes (spawned: a forked
    PyTorch can hang on its thread pool)."""
    if config.jobs == 1:
        _use_rows(rows, config.num_threads)
        yield map
        return
    with ProcessPoolExecutor(config.jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                             initargs=(rows, config.num_threads)) as pool:
        _use_rows(rows, config.num_threads)  # the chosen model's test accuracy is taken here
        yield lambda fn, tasks: console.progress(pool.map(fn, tasks), total=len(tasks), unit="fine-tune", leave=False,
                                                 desc=f"probe fine-tunes, {config.jobs} at once")


def _arm(source: ModelSource, run: Callable, config: ProbeConfig) -> Arm:
    """Choose the protocol and rate on dev with the first seed, then fine-tune the other seeds with them."""
    grid = [(protocol, rate) for protocol in config.protocols for rate in config.lr_grid or (config.learning_rate,)]
    dev_accuracy: dict[str, float] = {}
    if bool(config.lr_grid) or len(config.protocols) > 1:  # chosen on dev: the first best in grid order
        results = list(run(_fine_tune, [(source, p, r, config.seed, config, "dev", True) for p, r in grid]))
        dev_accuracy = {dev_key(p, r, config): acc for (p, r), (acc, _, _) in zip(grid, results)}
        best = max(range(len(grid)), key=lambda i: results[i][0])
        (protocol, rate), (_, loss, weights) = grid[best], results[best]
        model = source.make(config.seed)
        model.load_state_dict(weights)
        first = (_accuracy(model, "test", config.batch_size), loss)
        del model, results
    else:
        (protocol, rate), = grid
        first = next(iter(run(_fine_tune, [(source, protocol, rate, config.seed, config, "test", False)])))[:2]
    others = run(_fine_tune, [(source, protocol, rate, seed, config, "test", False)
                              for seed in range(config.seed + 1, config.seed + config.seeds)])
    accuracies, losses = zip(first, *((acc, loss) for acc, loss, _ in others))
    return Arm(rate, dev_accuracy, list(accuracies), float(np.mean(losses)), protocol)


def _frozen(model_dir: str, model_config, ids: dict[str, list], labels: dict[str, list[int]], pad_id: int,
            config: ProbeConfig) -> dict:
    """Logistic regression on mean-pooled last-layer features: the pretrained encoder vs random ones."""
    import torch
    from transformers import ElectraModel

    def score(encoder) -> tuple[float, float]:
        splits = [s for s in ("train", "dev", "test") if ids[s]]
        feats = [finetune.mean_pooled_features(encoder, ids[s], pad_id) for s in splits]
        scaled = dict(zip(splits, finetune.standardise(*feats)))
        if ids["dev"]:  # the L2 strength chosen on dev, like the fine-tuning rate
            fits = {l2: finetune.fit_logistic(scaled["train"], np.asarray(labels["train"]), l2) for l2 in FROZEN_L2_GRID}
            l2 = max(FROZEN_L2_GRID, key=lambda c: finetune.logistic_accuracy(*fits[c], scaled["dev"], labels["dev"]))
            w, b = fits[l2]
        else:
            l2 = FROZEN_L2
            w, b = finetune.fit_logistic(scaled["train"], np.asarray(labels["train"]), l2)
        return finetune.logistic_accuracy(w, b, scaled["test"], labels["test"]), l2

    pretrained, l2 = score(ElectraModel.from_pretrained(model_dir))
    out = {"pretrained_accuracy": pretrained, "pretrained_l2": l2}
    if config.random_init:
        random_scores = []
        for seed in range(config.seed, config.seed + config.seeds):
            torch.manual_seed(seed)
            random_scores.append(score(ElectraModel(model_config))[0])
        out.update(random_init_accuracies=random_scores, random_init_accuracy=float(np.mean(random_scores)),
                   random_init_std=float(np.std(random_scores, ddof=1)) if len(random_scores) > 1 else 0.0)
    return out


def _generator_dir(model_dir: str, architectures: Sequence[str], given: str | None) -> str | None:
    if given:
        _check_model_dir(given)
        return given
    if "ElectraForMaskedLM" in architectures:
        return model_dir
    beside = os.path.join(os.path.dirname(os.path.abspath(model_dir)), "generator")
    return beside if os.path.exists(os.path.join(beside, "config.json")) else None


def _intrinsic(model_dir: str, generator_dir: str, architectures: Sequence[str], tokenizer, ids: dict[str, list],
               config: ProbeConfig) -> dict:
    from transformers import ElectraForMaskedLM, ElectraForPreTraining

    generator = ElectraForMaskedLM.from_pretrained(generator_dir)
    discriminator = (ElectraForPreTraining.from_pretrained(model_dir)
                     if "ElectraForPreTraining" in architectures else None)
    special = set(tokenizer.all_special_ids)
    return intrinsic.measure(generator, discriminator, ids["train"], ids["test"], special, tokenizer.mask_token_id,
                             tokenizer.pad_token_id or 0, generator.config.vocab_size, seed=config.seed).to_dict()


def _probe(model_dir: str, generator_dir: str | None, train: Split, dev: Split, test: Split, config: ProbeConfig,
           start: float) -> ProbeResult:
    from transformers import AutoConfig, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model_config = AutoConfig.from_pretrained(model_dir, num_labels=2)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load model folder {model_dir}: {exc}") from exc
    max_len = min(config.max_seq_length, model_config.max_position_embeddings)
    splits = {"train": train, "dev": dev, "test": test}
    ids = {name: (tokenizer(s.texts, truncation=True, max_length=max_len)["input_ids"] if s.texts else [])
           for name, s in splits.items()}
    labels = {name: s.labels for name, s in splits.items()}
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    architectures = model_config.architectures or []

    with _runner(Rows(ids, labels, pad_id), config) as run:
        pretrained = _arm(ModelSource(model_dir, model_config, True), run, config)
        random_init = _arm(ModelSource(model_dir, model_config, False), run, config) if config.random_init else None
    frozen = _frozen(model_dir, model_config, ids, labels, pad_id, config) if config.frozen else None
    gen_dir = _generator_dir(model_dir, architectures, generator_dir) if config.intrinsic else None
    measured = _intrinsic(model_dir, gen_dir, architectures, tokenizer, ids, config) if gen_dir else None

    counts = np.bincount(np.asarray(test.labels), minlength=2)
    return ProbeResult(
        pretrained_accuracy=pretrained.mean, pretrained_std=pretrained.std,
        random_init_accuracy=random_init.mean if random_init else None,
        random_init_std=random_init.std if random_init else None,
        majority_accuracy=float(counts.max() / counts.sum()),
        pretrained={**pretrained._asdict(), "mean": pretrained.mean, "std": pretrained.std},
        random_init={**random_init._asdict(), "mean": random_init.mean, "std": random_init.std} if random_init else None,
        frozen=frozen, intrinsic=measured,
        train_rows=len(train.texts), dev_rows=len(dev.texts), test_rows=len(test.texts),
        steps=len(finetune.batch_order(len(train.texts), config.batch_size, config.epochs, config.seed)),
        seconds=time.time() - start,
    )


def _setting(arm: dict) -> str:
    """"lr 0.001", or "llrd, lr 0.001" for a protocol other than plain."""
    protocol = arm.get("protocol", "plain")
    return ("" if protocol == "plain" else f"{protocol}, ") + f"lr {arm['learning_rate']:g}"


def summary_lines(result: ProbeResult) -> list[str]:
    """What the model learned, each figure beside the baseline it must beat."""
    seeds = len(result.pretrained["accuracies"])
    spread = (lambda m, s: f"{m:.3f} +- {s:.3f}") if seeds > 1 else (lambda m, s: f"{m:.3f}")
    versus = (f" vs random init {spread(result.random_init_accuracy, result.random_init_std)} "
              f"({_setting(result.random_init)})" if result.random_init else "")
    lines = [
        f"probe: NSMC accuracy pretrained {spread(result.pretrained_accuracy, result.pretrained_std)} "
        f"({_setting(result.pretrained)}){versus}; majority {result.majority_accuracy:.3f}; "
        f"{seeds} seed(s), {result.train_rows} train / {result.dev_rows} dev / {result.test_rows} test rows, "
        f"{result.steps} steps, {result.seconds:.0f} s"]
    if result.frozen:
        f = result.frozen
        versus = (f" vs random init {spread(f['random_init_accuracy'], f['random_init_std'])}"
                  if "random_init_accuracy" in f else "")
        lines.append(f"frozen features + logistic regression: pretrained {f['pretrained_accuracy']:.3f}{versus}")
    if result.intrinsic:
        m = result.intrinsic
        line = (f"held-out generator top-1 on [MASK]ed tokens {m['heldout_generator_accuracy']:.3f} vs "
                f"{m['unigram_baseline_accuracy']:.3f} always answering the most frequent token")
        if m["heldout_discriminator_auc"] is not None:
            line += (f"; discriminator AUC on its generator's replacements {m['heldout_discriminator_auc']:.3f} vs "
                     f"{m['token_only_auc']:.3f} for a scorer that sees only the token")
        lines.append(line)
    return lines


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    d = ProbeConfig()
    p = console.parser(
        prog="electra-probe",
        description="Fine-tune an exported ELECTRA folder on NSMC sentiment; compare with random init.",
    )
    p.add_argument("model_dir", help="exported Hugging Face folder (e.g. runs/demo/hf/discriminator)")
    p.add_argument("--generator-dir", default=None,
                   help="generator folder for the intrinsic metrics (default: generator/ beside MODEL_DIR)")
    p.add_argument("--train-tsv", default=DEFAULT_TRAIN,
                   help="id<TAB>document<TAB>label with a header line (default: the bundled 4,000 rows, "
                        "data/nsmc_sentiment/train.tsv)")
    p.add_argument("--test-tsv", default=DEFAULT_TEST,
                   help="scored rows, as --train-tsv (default: the bundled data/nsmc_sentiment/test.tsv)")
    p.add_argument("--fair", action="store_true",
                   help=f"the protocol: lr chosen per arm from {', '.join(f'{r:g}' for r in FAIR_LR_GRID)} on 1,000 "
                        "dev rows carved from the train file, 3 seeds (--lr-grid/--dev-rows/--seeds override)")
    p.add_argument("--max-train-rows", type=int, default=d.max_train_rows, help="0 = all")
    p.add_argument("--dev-rows", type=int, default=None, help="rows after the train rows that choose the rate")
    p.add_argument("--max-test-rows", type=int, default=d.max_test_rows, help="0 = all")
    p.add_argument("--max-seq-length", type=int, default=d.max_seq_length, help="tokens per review")
    p.add_argument("--epochs", type=int, default=d.epochs, help="fine-tuning epochs")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="fine-tuning batch")
    p.add_argument("--learning-rate", type=float, default=d.learning_rate, help="without a grid")
    p.add_argument("--lr-grid", type=float, nargs="+", default=None, help="rates to choose from on the dev rows")
    p.add_argument("--seeds", type=int, default=None, help="fine-tuning seeds per arm")
    p.add_argument("--protocols", nargs="+", choices=finetune.PROTOCOLS, default=None,
                   help="fine-tuning protocols to choose from on the dev rows, with the rate, per arm: plain, llrd "
                        "(layer-wise rate decay), lpft (linear probe, then fine-tune), reinit (top layer "
                        "re-initialised); default plain")
    p.add_argument("--layer-decay", type=float, default=d.layer_decay, help="llrd's per-layer rate factor")
    p.add_argument("--warmup-fraction", type=float, default=d.warmup_fraction, help="share of the steps warming up")
    p.add_argument("--seed", type=int, default=d.seed, help="fine-tuning seed (the first, with --seeds)")
    p.add_argument("--num-threads", type=int, default=d.num_threads, help="PyTorch intra-op threads")
    p.add_argument("--jobs", type=int, default=d.jobs,
                   help="fine-tunes at once, each in its own process (e.g. the number of cores)")
    p.add_argument("--frozen", action=argparse.BooleanOptionalAction, default=d.frozen,
                   help="linear probe on frozen features")
    p.add_argument("--intrinsic", action=argparse.BooleanOptionalAction, default=d.intrinsic,
                   help="held-out generator top-1 and discriminator AUC against their baselines")
    p.add_argument("--random-init", action=argparse.BooleanOptionalAction, default=d.random_init,
                   help="also fine-tune the same architecture from random weights (off: the pretrained arm only)")
    p.add_argument("--output-json", help="also write the result here")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> ProbeConfig:
    base = fair() if args.fair else ProbeConfig()
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(ProbeConfig)
             if getattr(args, f.name, None) is not None}
    for key in ("lr_grid", "protocols"):
        if key in given:
            given[key] = tuple(given[key])
    return dataclasses.replace(base, **given)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    result = run_probe(args.model_dir, args.train_tsv, args.test_tsv, config_from_args(args), args.generator_dir)
    if args.output_json:
        fileio.write_text(args.output_json, json.dumps(result.to_dict(), indent=2) + "\n")
    for line in summary_lines(result):
        print(line)
    return 0


def cli() -> None:
    run_cli(main)
