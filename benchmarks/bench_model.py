"""Time SCMT (legacy and strict) against its own backbone, side by side in one run.

    python benchmarks/bench_model.py [--threads 2] [--repeats 20] [--sizes 8x90,32x256]

The backbone is SCMT's own embedding + causal encoder + LM head (the same
modules and weights), so the ratio is the cost of the memory, schemas and
fusion. Inputs are real molecules from the shipped set, tokenised with the
published n-gram tokeniser, packed end to end into rows of the requested
length. Reports the median and the minimum of interleaved repeats of an eval forward
(no grad) and a train step (forward, backward, AdamW step); on a shared
machine the minimum is the steadier measure of the work itself.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch import nn

from scmt import SCMTConfig, SCMTForCausalLM
from scmt.molecules import read_smiles, smiles_to_selfies
from scmt.tokenization import NgramTokenizer


class Backbone(nn.Module):
    """Embedding + causal encoder + LM head of an SCMT model, sharing its modules."""

    def __init__(self, model: SCMTForCausalLM) -> None:
        super().__init__()
        self.embed = model.embed
        self.pos_embed = model.pos_embed
        self.encoder = model.encoder
        self.lm_head = model.lm_head

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(input_ids) + self.pos_embed[:, : input_ids.shape[1]]
        return self.lm_head(self.encoder(hidden))


def molecule_batch(batch: int, length: int, tokenizer: NgramTokenizer) -> torch.Tensor:
    """B×L real molecule tokens, molecules packed end to end."""
    needed = batch * length
    tokens: list[int] = []
    conversion = smiles_to_selfies(read_smiles(limit=max(64, needed // 10)))
    for text in conversion.selfies:
        tokens.extend(tokenizer.encode(text))
        if len(tokens) >= needed:
            break
    return torch.tensor(tokens[:needed]).view(batch, length)


def eval_forward(model: nn.Module, input_ids: torch.Tensor) -> None:
    with torch.no_grad():
        model(input_ids)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, input_ids: torch.Tensor) -> None:
    output = model(input_ids, labels=input_ids) if isinstance(model, SCMTForCausalLM) else model(input_ids)
    if isinstance(model, SCMTForCausalLM):
        loss = output.loss
    else:
        logits = output
        loss = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), input_ids[:, 1:].reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def time_interleaved(tasks: dict[str, callable], repeats: int, warmup: int = 3) -> dict[str, tuple[float, float]]:
    """(median, minimum) seconds per call of each task, run in turn so drift hits all alike."""
    for task in tasks.values():
        for _ in range(warmup):
            task()
    samples: dict[str, list[float]] = {name: [] for name in tasks}
    for _ in range(repeats):
        for name, task in tasks.items():
            start = time.perf_counter()
            task()
            samples[name].append(time.perf_counter() - start)
    return {name: (statistics.median(values), min(values)) for name, values in samples.items()}


def run_size(batch: int, length: int, repeats: int, tokenizer: NgramTokenizer) -> list[str]:
    input_ids = molecule_batch(batch, length, tokenizer)
    models = {}
    for mode in ("legacy", "strict"):
        torch.manual_seed(0)
        models[mode] = SCMTForCausalLM(SCMTConfig(vocab_size=len(tokenizer), mode=mode))
    torch.manual_seed(0)
    backbone = Backbone(SCMTForCausalLM(SCMTConfig(vocab_size=len(tokenizer))))
    contenders = {"backbone": backbone, "scmt-legacy": models["legacy"], "scmt-strict": models["strict"]}

    lines = []
    for phase in ("eval forward", "train step"):
        tasks = {}
        for name, model in contenders.items():
            if phase == "eval forward":
                model.eval()
                tasks[name] = lambda model=model: eval_forward(model, input_ids)
            else:
                # Dropout off so that timing is not hostage to random masks; optimiser state is real.
                model.eval()
                optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, betas=(0.9, 0.95), weight_decay=0.01)
                tasks[name] = lambda model=model, optimizer=optimizer: train_step(model, optimizer, input_ids)
        timings = time_interleaved(tasks, repeats)
        base_median, base_min = timings["backbone"]
        for name, (median, minimum) in timings.items():
            lines.append(
                f"| {batch}x{length} | {phase} | {name} | {median * 1000:.1f} | {minimum * 1000:.1f} "
                f"| {median / base_median:.2f}x | {minimum / base_min:.2f}x |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--repeats", type=int, default=20, help="timed repeats per task (default 20)")
    parser.add_argument("--sizes", default="8x90,32x256", help="comma-separated BxL sizes (default 8x90,32x256)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    tokenizer = NgramTokenizer.from_file()
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, repeats {args.repeats}")
    print("| size | phase | model | median ms | min ms | median vs backbone | min vs backbone |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        batch, length = (int(part) for part in size.lower().split("x"))
        for line in run_size(batch, length, args.repeats, tokenizer):
            print(line, flush=True)


if __name__ == "__main__":
    main()
