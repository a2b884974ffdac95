"""Pretrain ELECTRA: `python run_pretraining.py --data-dir DIR --model-name NAME --hparams JSON_OR_FILE`."""
from pretrain.training.run import cli

if __name__ == "__main__":
    cli()
