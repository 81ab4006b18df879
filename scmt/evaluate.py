"""Evaluate a checkpoint written by ``scmt.train``: held-out loss and sampled molecules.

    python -m scmt.evaluate CKPT [--samples 200] [--seed 0] [--json PATH]

Reports the LM loss and perplexity on the run's held-out split, rebuilt from
its recorded data file, seed and split. The loss is averaged over tokens, so it
can differ in the fourth decimal from the trainer's ``eval_loss``, an average
over batches. Then it samples sequences from ``<s>``
and, for molecule runs, the share that are valid (the SELFIES decodes and RDKit
sanitises the molecule), unique among the valid ones, and novel (not in the
training split).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from .checkpoint import CheckpointError, checkpoint_format, load_checkpoint
from .data import encode_texts, load_molecules, load_text, split_indices
from .train import RUN_CONFIG_FILE, file_fingerprint


def load_run(checkpoint: Path) -> tuple[torch.nn.Module, object, dict]:
    """Model (eval mode), tokenizer and run record of a checkpoint directory."""
    record_path = checkpoint / RUN_CONFIG_FILE
    if not record_path.is_file():
        raise CheckpointError(f"{record_path} not found: evaluate needs a checkpoint written by scmt.train")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") == "scmt" or checkpoint_format(checkpoint) == "reference":
        model = load_checkpoint(checkpoint)
    else:
        model = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    if len(tokenizer) != model.config.vocab_size:
        raise CheckpointError(
            f"{checkpoint}: the tokenizer has {len(tokenizer)} tokens but the model expects {model.config.vocab_size}: "
            f"the checkpoint's tokenizer files do not belong to its weights"
        )
    return model, tokenizer, record


def rebuild_splits(record: dict):
    """Rebuild the corpus and its (train, eval) index lists exactly as the run split them."""
    options = record["options"]
    expected = record["data"]["sha256"]
    actual = file_fingerprint(options["data"])
    if actual != expected:
        source = options["data"] or "the shipped molecule file"
        raise SystemExit(f"error: {source} changed since training (sha256 differs): evaluate needs the run's data")
    if options["text"]:
        corpus = load_text(options["data"], limit=options["limit"])
    else:
        corpus = load_molecules(options["data"], column=options["column"], limit=options["limit"])
    train_index, eval_index = split_indices(len(corpus.texts), options["seed"], options["eval_fraction"])
    return corpus, train_index, eval_index


@torch.no_grad()
def heldout_loss(model, tokenizer, texts: list[str], seq_len: int, batch_size: int) -> tuple[float, int]:
    """Token-weighted mean next-token cross-entropy (nats) over ``texts``, and the token count."""
    encoded = encode_texts(tokenizer, texts, seq_len).input_ids
    return token_loss(model, encoded, tokenizer.pad_token_id, batch_size)


@torch.no_grad()
def token_loss(model, input_ids: torch.Tensor, pad_id: int, batch_size: int = 64) -> tuple[float, int]:
    """Token-weighted mean next-token cross-entropy (nats) over padded N×L ids, and the token count.

    Pads are inputs but not targets, as in training.
    """
    total, count = 0.0, 0
    for start in range(0, input_ids.shape[0], batch_size):
        batch = input_ids[start : start + batch_size]
        logits = model(input_ids=batch).logits
        targets = batch[:, 1:].masked_fill(batch[:, 1:] == pad_id, -100)
        losses = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=-100, reduction="sum"
        )
        total += float(losses)
        count += int((targets != -100).sum())
    return total / max(count, 1), count


@torch.no_grad()
def sample_sequences(model, tokenizer, count: int, max_tokens: int, temperature: float, top_k: int, seed: int, batch_size: int) -> list[list[int]]:
    """Sample ``count`` sequences from ``<s>``, recomputing the whole sequence each step.

    Each row lives in a buffer of ``max_tokens`` positions filled with the pad id
    beyond the sampled prefix, as in training (right-padded sequences). One fixed
    shape also keeps CPU kernels from being rebuilt for every new length.
    """
    generator = torch.Generator().manual_seed(seed)
    results = []
    for start in range(0, count, batch_size):
        rows = min(batch_size, count - start)
        tokens = torch.full((rows, max_tokens), tokenizer.pad_token_id, dtype=torch.int64)
        tokens[:, 0] = tokenizer.bos_token_id
        finished = torch.zeros(rows, dtype=torch.bool)
        for position in range(1, max_tokens):
            logits = model(input_ids=tokens).logits[:, position - 1].float() / max(temperature, 1e-6)
            if top_k > 0:
                kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                logits = logits.masked_fill(logits < kth, -math.inf)
            next_token = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(1)
            tokens[:, position] = torch.where(finished, tokenizer.pad_token_id, next_token)
            finished |= next_token == tokenizer.eos_token_id
            if finished.all():
                break
        results.extend(tokens.tolist())
    return results


def canonical_smiles(smiles: str) -> str | None:
    """RDKit canonical SMILES, or None when RDKit cannot parse and sanitise it."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    molecule = Chem.MolFromSmiles(smiles)
    if molecule is None or molecule.GetNumAtoms() == 0:
        return None
    return Chem.MolToSmiles(molecule)


def molecule_metrics(samples: list[str], training_smiles: list[str]) -> dict:
    """Validity, uniqueness and novelty of sampled SELFIES strings."""
    import selfies

    canonical = []
    for text in samples:
        try:
            smiles = selfies.decoder(text)
        except selfies.DecoderError:
            smiles = None
        canonical.append(canonical_smiles(smiles) if smiles else None)
    valid = [item for item in canonical if item is not None]
    unique = set(valid)
    known = {item for item in (canonical_smiles(s) for s in training_smiles) if item is not None}
    novel = unique - known
    return {
        "samples": len(samples),
        "valid": len(valid),
        "validity": len(valid) / max(len(samples), 1),
        "uniqueness": len(unique) / max(len(valid), 1),
        "novelty": len(novel) / max(len(unique), 1),
        "examples": sorted(unique)[:10],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scmt.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="checkpoint directory written by scmt.train")
    parser.add_argument("--samples", type=int, default=200, help="sequences to sample (default 200; 0 skips sampling)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    parser.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest tokens (default 0: all)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--batch-size", type=int, default=64, help="sequences per forward pass (default 64)")
    parser.add_argument("--json", default=None, help="also write the report as JSON to this path")
    args = parser.parse_args(argv)
    if args.samples < 0 or args.batch_size < 1:
        parser.error("--samples must be >= 0 and --batch-size >= 1")

    if args.json:
        target = Path(args.json)
        if target.is_dir() or not target.parent.is_dir():
            print(f"error: --json {args.json}: pass a file path in an existing directory", file=sys.stderr)
            return 2
    checkpoint = Path(args.checkpoint)
    try:
        checkpoint_format(checkpoint)
        model, tokenizer, record = load_run(checkpoint)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    corpus, train_index, eval_index = rebuild_splits(record)
    seq_len = record["options"]["seq_len"]

    loss, tokens = heldout_loss(model, tokenizer, [corpus.texts[i] for i in eval_index], seq_len, args.batch_size)
    report = {"checkpoint": str(checkpoint), "eval_loss": loss, "eval_perplexity": math.exp(loss), "eval_tokens": tokens}
    print(f"held-out: {len(eval_index)} sequences, {tokens} tokens, loss {loss:.4f} nats, perplexity {math.exp(loss):.3f}")

    if args.samples:
        sampled = sample_sequences(model, tokenizer, args.samples, seq_len, args.temperature, args.top_k, args.seed, args.batch_size)
        texts = [tokenizer.decode(ids, skip_special_tokens=True).replace(" ", "") for ids in sampled]
        if corpus.kind == "molecules":
            metrics = molecule_metrics(texts, [corpus.smiles[i] for i in train_index])
            report["sampling"] = metrics
            print(
                f"sampled {metrics['samples']}: validity {metrics['validity']:.1%}, "
                f"uniqueness {metrics['uniqueness']:.1%}, novelty {metrics['novelty']:.1%}"
            )
            for example in metrics["examples"][:5]:
                print(f"  {example}")
        else:
            report["sampling"] = {"samples": len(texts), "examples": texts[:10]}
            for example in texts[:5]:
                print(f"  {example}")

    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
