"""The benchmarks' peer: replaced token detection built from PyTorch `transformers` parts.

`ElectraForMaskedLM` (generator) and `ElectraForPreTraining` (discriminator) share the
whole embeddings module (tied, as ELECTRA ties them); the generator head runs on the masked
positions only; fakes are Gumbel-max samples without gradient; the loss is
`gen_weight * MLM + disc_weight * discriminator`, clipped by global norm 1.0 before the
optimiser step. `autocast` runs forward and loss under `torch.autocast("cpu", bfloat16)`, PyTorch's
own mixed precision (float32 weights and backward's accumulation, bfloat16 matrix products).
Masking is the same as ours (15% of the maskable tokens without replacement, N fixed slots,
85% [MASK] / 15% kept) written independently here.

Used for speed (`bench_train_throughput.py`) and for what the objective learns
(`demo_reference.py`); nothing of the project runs inside it.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence


class PeerDims(NamedTuple):
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int


class Peer(NamedTuple):
    discriminator: object  # ElectraForPreTraining
    generator: object  # ElectraForMaskedLM
    named_parameters: list  # (name, parameter), each shared parameter once


def build_peer(vocab_size: int, embedding_size: int, max_position_embeddings: int, discriminator: PeerDims,
               generator: PeerDims, dropout: float = 0.1, seed: int = 0) -> Peer:
    """Generator and discriminator with tied embeddings, in training mode."""
    import torch
    from transformers import ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining

    torch.manual_seed(seed)
    common = dict(vocab_size=vocab_size, embedding_size=embedding_size, max_position_embeddings=max_position_embeddings,
                  type_vocab_size=2, hidden_act="gelu", hidden_dropout_prob=dropout,
                  attention_probs_dropout_prob=dropout)
    disc = ElectraForPreTraining(ElectraConfig(**discriminator._asdict(), **common))
    gen = ElectraForMaskedLM(ElectraConfig(**generator._asdict(), **common))
    gen.electra.embeddings = disc.electra.embeddings  # word, position, type embeddings and their LayerNorm
    gen.generator_lm_head.weight = disc.electra.embeddings.word_embeddings.weight
    disc.train(), gen.train()
    named = {id(p): (n, p) for n, p in [*disc.named_parameters(), *gen.named_parameters()]}
    return Peer(disc, gen, list(named.values()))


def adamw(peer: Peer, learning_rate: float, weight_decay: float = 0.01, exclude: Sequence[str] = ()):
    """torch AdamW (bias-corrected, eps 1e-6); parameters whose name holds a string of `exclude` get no decay."""
    import torch

    decayed = [p for n, p in peer.named_parameters if not any(e in n for e in exclude)]
    kept = [p for n, p in peer.named_parameters if any(e in n for e in exclude)]
    groups = [{"params": decayed, "weight_decay": weight_decay}, {"params": kept, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=learning_rate, betas=(0.9, 0.999), eps=1e-6)


class StepResult(NamedTuple):
    loss: float
    mlm_loss: float
    mlm_accuracy: float
    disc_loss: float


def make_step(peer: Peer, optimizer, vocab: Sequence[str], max_predictions: int, mask_prob: float = 0.15,
              gen_weight: float = 1.0, disc_weight: float = 50.0,
              schedule: Callable[[], None] | None = None, autocast: bool = False) -> Callable:
    """`step(input_ids, input_mask, segment_ids)` (int64 tensors [B, L]) -> StepResult; one update.

    `schedule` is called after each optimiser step (e.g. a torch LR scheduler's `step`); `autocast`
    computes forward and loss in bfloat16 where autocast allows it (the backward follows its dtypes).
    """
    import torch
    import torch.nn.functional as F

    gen, disc = peer.generator, peer.discriminator
    params = [p for _, p in peer.named_parameters]
    special = torch.tensor([vocab.index(t) for t in ("[PAD]", "[CLS]", "[SEP]", "[MASK]")])
    mask_id = vocab.index("[MASK]")

    def step(ids, attn, seg) -> StepResult:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss, mlm, accuracy, disc_loss = forward(ids, attn, seg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if schedule is not None:
            schedule()
        return StepResult(float(loss.detach()), float(mlm.detach()), float(accuracy), float(disc_loss.detach()))

    def forward(ids, attn, seg):
        """Masking, generator, sampling, discriminator: (loss, mlm, accuracy, disc_loss) tensors."""
        maskable = attn.bool() & ~torch.isin(ids, special)
        k = torch.clamp(torch.round(maskable.sum(1) * mask_prob), 1, max_predictions).long()  # [B]
        scores = torch.where(maskable, torch.rand(ids.shape), torch.full(ids.shape, -1.0))
        positions = scores.topk(max_predictions, dim=1).indices  # [B, N]
        weights = (torch.arange(max_predictions)[None, :] < k[:, None]).float()  # [B, N]
        original = ids.gather(1, positions)
        to_mask = (torch.rand(positions.shape) < 0.85) & weights.bool()
        masked = ids.scatter(1, positions, torch.where(to_mask, torch.full_like(original, mask_id), original))

        hidden = gen.electra(masked, attention_mask=attn, token_type_ids=seg).last_hidden_state  # [B, L, Hg]
        picked = hidden.gather(1, positions[..., None].expand(-1, -1, hidden.shape[-1]))  # [B, N, Hg]
        logits = gen.generator_lm_head(gen.generator_predictions(picked))  # [B, N, V], masked slots only
        nll = F.cross_entropy(logits.transpose(1, 2), original, reduction="none")
        mlm = (nll * weights).sum() / weights.sum()
        with torch.no_grad():
            accuracy = ((logits.argmax(-1) == original).float() * weights).sum() / weights.sum()
            gumbel = -torch.log(-torch.log(torch.rand(logits.shape).clamp_min(1e-9)))
            sampled = (logits + gumbel).argmax(-1)
            fake = masked.scatter(1, positions, torch.where(weights.bool(), sampled, masked.gather(1, positions)))
            labels = ((fake != ids) & attn.bool()).float()
        disc_logits = disc(fake, attention_mask=attn, token_type_ids=seg).logits  # [B, L]
        xent = F.binary_cross_entropy_with_logits(disc_logits, labels, reduction="none")
        disc_loss = (xent * attn).sum() / attn.sum()
        return gen_weight * mlm + disc_weight * disc_loss, mlm, accuracy, disc_loss

    return step
