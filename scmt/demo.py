"""Demo on real molecules: the published model leaks future tokens, strict mode does not.

    python -m scmt.demo [--molecules 8] [--seed 0] [--mem-size 128]

Builds a seeded, randomly initialised SCMT at the published default config,
tokenises shipped molecules with the published SELFIES n-gram tokeniser, and
for every cut position k of each molecule replaces tokens >= k with random
ones. A trial leaks when any logit before k moves. Prints, per mode, the
trials run, the leaking trials, and the largest shift.
"""

from __future__ import annotations

import argparse
import sys

import torch
from tqdm import tqdm

from .configuration_scmt import SCMTConfig
from .modeling_scmt import SCMTForCausalLM
from .molecules import read_smiles, smiles_to_selfies
from .tokenization import NgramTokenizer


def measure_leaks(model: SCMTForCausalLM, sequences: list[list[int]], seed: int) -> tuple[int, int, float]:
    """Return (trials, leaking trials, max |Δ logit| before the cut) over every cut of every sequence."""
    generator = torch.Generator().manual_seed(seed)
    trials = leaks = 0
    worst = 0.0
    with torch.no_grad():
        for ids in tqdm(sequences, desc=f"{model.config.causal_mode} trials", unit="molecule", disable=len(sequences) < 50):
            length = len(ids)
            clean_batch = torch.tensor(ids).expand(length - 1, length).contiguous()
            perturbed = clean_batch.clone()
            for row, cut in enumerate(range(1, length)):
                perturbed[row, cut:] = torch.randint(5, model.config.vocab_size, (length - cut,), generator=generator)
            clean = model(clean_batch).logits
            moved = model(perturbed).logits
            for row, cut in enumerate(range(1, length)):
                delta = (moved[row, :cut] - clean[row, :cut]).abs().max().item()
                trials += 1
                leaks += delta > 0
                worst = max(worst, delta)
    return trials, leaks, worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scmt.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--molecules", type=int, default=8, help="number of shipped molecules to test, at most the 24,147 shipped (default 8; each takes about half a second)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the perturbations (default 0)")
    parser.add_argument("--mem-size", type=int, default=128, help="memory slots; small values force pruning (default 128)")
    args = parser.parse_args(argv)
    if args.molecules < 1:
        parser.error(f"--molecules {args.molecules}: pass at least 1")
    if args.mem_size < 1:
        parser.error(f"--mem-size {args.mem_size}: pass at least 1")

    tokenizer = NgramTokenizer.from_file()
    conversion = smiles_to_selfies(read_smiles(limit=args.molecules))
    sequences = [tokenizer.encode(text) for text in conversion.selfies]
    sequences = [ids for ids in sequences if len(ids) >= 2]
    print(
        f"{len(sequences)} molecules from the shipped set ({len(conversion.failed)} failed SELFIES conversion), "
        f"{sum(map(len, sequences))} tokens, seed {args.seed}, mem_size {args.mem_size}"
    )

    print(f"{'mode':<8} {'trials':>7} {'leaking':>8} {'rate':>7} {'max |Δ logit|':>14}")
    for mode in ("legacy", "strict"):
        torch.manual_seed(args.seed)
        config = SCMTConfig(vocab_size=len(tokenizer), mem_size=args.mem_size, mode=mode)
        model = SCMTForCausalLM(config).eval()
        trials, leaks, worst = measure_leaks(model, sequences, args.seed)
        print(f"{mode:<8} {trials:>7} {leaks:>8} {leaks / trials:>7.1%} {worst:>14.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
