"""What every stage stands on: one error type and CLI wrapper, local/gs:// file I/O.

Nothing here imports a stage; every stage (data_prep, pretrain, cloudops) may import this.
"""
