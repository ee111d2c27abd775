"""The whole supervised recipe, stage by stage: data -> train -> average -> diarize -> score + report.

Every stage calls the library (:func:`~diarizen_lab.training.recipe.train`,
:func:`~diarizen_lab.training.run_dir.average_checkpoints`,
:func:`~diarizen_lab.evaluation.diarize.diarize_recordings`, :func:`~diarizen_lab.evaluation.score.score_files`,
:func:`~diarizen_lab.evaluation.report.write_report`); :func:`run_stages` is the recipe, which the pruning recipe
runs too. Each stage skips work whose output already exists and can be run alone (``--stage N --stop-stage N``),
so an interrupted recipe is resumed by running it again.

  1 data      prepare train/dev/test data dirs (synthetic corpus, or AMI / AISHELL-4 / AliMeeting from local copies)
  2 train     train the model of the config (resumes from the latest checkpoint if there is one)
  3 average   average the best epochs by the config's monitored metric (from metrics.jsonl)
  4 diarize   pyannote.audio pipeline on each test set, one RTTM per recording
  5 score     DER at collar 0 and 0.25 per test set, then results.md + results.png in the experiment dir

Synthetic corpus on CPU (what ``make demo`` runs)::

    python recipes/diar_ssl/run_stage.py -C conf/tiny_wavlm_conformer.toml

AMI SDM with the real config (train on GPUs with ``accelerate launch`` first, then stages 3-5)::

    python recipes/diar_ssl/run_stage.py -C conf/wavlm_updated_conformer.toml --corpus ami \\
        --corpus-root /data/amicorpus --stage 1 --stop-stage 1
    accelerate launch --multi_gpu --num_processes 4 recipes/diar_ssl/run_dual_opt.py \\
        -C conf/wavlm_updated_conformer.toml
    python recipes/diar_ssl/run_stage.py -C conf/wavlm_updated_conformer.toml --corpus ami --stage 3 \\
        --diarization conf/diarization/wespeaker_vbx.toml

The test sets are the ``dev`` and ``test`` directories beside the training data directory (``--test-sets``
changes that). Pipeline settings (embedding, clustering, PLDA, window) come from ``--diarization``, a TOML
file with a ``[diarization]`` section.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Sequence
from pathlib import Path

from diarizen_lab.cli import report_errors
from diarizen_lab.cli.average import print_record
from diarizen_lab.data.corpora.aishell4 import prepare_aishell4
from diarizen_lab.data.corpora.alimeeting import prepare_alimeeting
from diarizen_lab.data.corpora.ami import prepare_ami
from diarizen_lab.cli.diarize import recordings
from diarizen_lab.config import load_config
from diarizen_lab.data.synth import synthesize_corpus
from diarizen_lab.evaluation.diarize import diarize_recordings
from diarizen_lab.evaluation.pipeline import DiarizationConfig
from diarizen_lab.evaluation.report import read_score, write_report
from diarizen_lab.evaluation.score import score_files, write_score_report
from diarizen_lab.training.recipe import load_training_config, train
from diarizen_lab.training.run_dir import METRICS_FILE, average_checkpoints, read_metrics

REPO = Path(__file__).resolve().parents[2]
COLLARS = (0.0, 0.25)
DIARIZATION = REPO / "conf" / "diarization" / "fbank_stats_ahc.toml"


def prepare_data(corpus: str, corpus_root: Path | None, data_root: Path) -> None:
    if (data_root / "train" / "wav.scp").exists():
        print(f"stage 1: {data_root} exists, skipped")
        return
    print(f"+ prepare {corpus} data in {data_root}", flush=True)
    if corpus == "synth":
        synthesize_corpus(data_root, minutes=20, seed=0)
        return
    if corpus_root is None:
        sys.exit(f"stage 1: --corpus {corpus} needs --corpus-root (the local copy of the corpus)")
    if corpus == "ami":
        prepare_ami(corpus_root, REPO.parent / "shared" / "ami-setup", data_root.parent)
    elif corpus == "aishell4":
        prepare_aishell4(corpus_root, data_root)
    else:
        prepare_alimeeting(corpus_root, data_root)


def check_learning(run_dir: Path, monitor: str, ratio: float) -> None:
    """Stop unless the best ``monitor`` value (lower is better) is at most ``ratio`` times the untrained one."""
    rows = [row for row in read_metrics(run_dir / METRICS_FILE) if monitor in row]
    if not rows or rows[0]["epoch"] != 0:
        sys.exit(f"learning check: {run_dir}/metrics.jsonl has no epoch-0 row (set [trainer] validate_at_start)")
    untrained, best = rows[0][monitor], min(row[monitor] for row in rows[1:])
    verdict = "ok" if best <= ratio * untrained else "FAILED"
    print(f"learning check: {monitor} untrained {untrained:.4f} -> best {best:.4f} "
          f"({best / untrained:.2f}x; required <= {ratio:g}x): {verdict}", flush=True)
    if verdict != "ok":
        sys.exit(1)


def save_untrained(config, path: Path) -> None:
    """The config's model with its initial (seeded) weights, i.e. what training starts from."""
    from accelerate.utils import set_seed

    from diarizen_lab.models.io import save_model
    from diarizen_lab.training.recipe import build_model, build_objective

    if path.exists():
        return
    set_seed(config["meta"].seed)
    print(f"+ saving the untrained model to {path}", flush=True)
    task = config["task"]
    model = build_model(config["model"], task, build_objective(config["objective"], task))
    save_model(path, model, meta={"note": "untrained: initial weights of the config"})


def run_stages(
    config_file: Path,
    first: int = 1,
    last: int = 5,
    *,
    corpus: str = "synth",
    corpus_root: Path | None = None,
    average: int = 3,
    diarization: Path = DIARIZATION,
    test_sets: Sequence[str] = ("dev", "test"),
    require_learning: float | None = None,
    with_untrained: bool = False,
) -> None:
    """Run stages ``first`` to ``last`` (see the module documentation) of the training config ``config_file``."""
    run = lambda stage: first <= stage <= last  # noqa: E731

    config = load_training_config(config_file)
    run_dir = config["meta"].run_dir
    data_root = config["train_dataset"].args["data_dir"].parent
    monitor = config["checkpoint"].monitor
    averaged = run_dir / f"avg_best_{average}.pt"

    if run(1):
        prepare_data(corpus, corpus_root, data_root)
    if run(2):
        print(f"+ train {config_file} (resuming from the latest checkpoint if there is one)", flush=True)
        train(config, resume=True)
        if require_learning is not None:
            check_learning(run_dir, monitor, require_learning)
    models = [averaged]
    if run(3):
        record = average_checkpoints(
            run_dir, averaged, metric=monitor, mode="best", n=average, metric_mode=config["checkpoint"].mode
        )
        print_record(record, averaged)
    if with_untrained:
        models.append(run_dir / "untrained.pt")
        if run(3):
            save_untrained(config, models[-1])
    settings = load_config(diarization, {"diarization": DiarizationConfig})["diarization"]
    scores = []
    for model, test_set in itertools.product(models, test_sets):
        data_dir = data_root / test_set
        out = run_dir / "infer" / model.stem / test_set
        if run(4):
            print(f"+ diarize {data_dir} with {model}", flush=True)
            written = diarize_recordings(model, recordings(data_dir / "wav.scp"), out / "rttm", settings,
                                         skip_existing=True)
            print(f"wrote {len(written)} RTTM file(s) to {out / 'rttm'}")
        for collar in COLLARS:
            score = out / f"score_collar{collar:g}.json"
            if run(5):
                uem = data_dir / "uem" if (data_dir / "uem").exists() else None
                print(f"+ score {out / 'rttm'} at collar {collar:g} -> {score}", flush=True)
                write_score_report(score, score_files(data_dir / "rttm", out / "rttm", uem, collar=collar))
                scores.append(read_score(f"{test_set} ({model.stem})", score))
    if run(5):
        markdown, chart = write_report(config["meta"].name, scores, run_dir / "results.md")
        print(markdown.read_text(), end="")
        print(f"wrote {markdown} and {chart}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-C", "--config", type=Path, required=True, help="training config (TOML)")
    parser.add_argument("--corpus", choices=["synth", "ami", "aishell4", "alimeeting"], default="synth")
    parser.add_argument("--corpus-root", type=Path, default=None, help="local copy of AMI / AISHELL-4 / AliMeeting")
    parser.add_argument("--stage", type=int, default=1)
    parser.add_argument("--stop-stage", type=int, default=5)
    parser.add_argument("--average", type=int, default=3, metavar="N", help="number of best epochs to average")
    parser.add_argument("--diarization", type=Path, default=DIARIZATION)
    parser.add_argument("--test-sets", nargs="+", default=["dev", "test"])
    parser.add_argument(
        "--require-learning", type=float, default=None, metavar="RATIO",
        help="fail unless the best validation metric is at most RATIO x the untrained model's "
        "(needs [trainer] validate_at_start = true)",
    )
    parser.add_argument(
        "--with-untrained", action="store_true",
        help="also diarize and score the untrained model (same seed and architecture), as a reference point",
    )
    args = parser.parse_args()
    run_stages(
        args.config, args.stage, args.stop_stage, corpus=args.corpus, corpus_root=args.corpus_root,
        average=args.average, diarization=args.diarization, test_sets=args.test_sets,
        require_learning=args.require_learning, with_untrained=args.with_untrained,
    )


if __name__ == "__main__":
    sys.exit(report_errors(main, program=sys.argv[0]))
