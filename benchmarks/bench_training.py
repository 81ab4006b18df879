"""Training throughput (tokens/s) of SCMT legacy, SCMT strict and GPT-2, side by side.

    python benchmarks/bench_training.py [--threads 2] [--repeats 20] [--batch 8] [--length 90]

Published default config (d_model 256, 8 heads, 4 layers, vocabulary 793),
the GPT-2 baseline of the same width and depth, real molecules packed into
rows. A step is forward, backward and AdamW, in train mode (dropout on), with
the labels the trainer uses (pads ignored). Steps of the three models
alternate; the table reports the median step and tokens/s.
"""

from __future__ import annotations

import argparse
import platform

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from scmt import SCMTConfig, SCMTForCausalLM
from scmt.tokenization import NgramTokenizer

from bench_model import molecule_batch, time_interleaved


def build_models(vocab_size: int) -> dict[str, torch.nn.Module]:
    models = {}
    for mode in ("legacy", "strict"):
        torch.manual_seed(0)
        models[f"scmt-{mode}"] = SCMTForCausalLM(SCMTConfig(vocab_size=vocab_size, mode=mode))
    torch.manual_seed(0)
    gpt2 = GPT2Config(vocab_size=vocab_size, n_positions=256, n_embd=256, n_layer=4, n_head=8, bos_token_id=0, eos_token_id=1, pad_token_id=2)
    models["gpt2"] = GPT2LMHeadModel(gpt2)
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--repeats", type=int, default=20, help="timed steps per model (default 20)")
    parser.add_argument("--batch", type=int, default=8, help="sequences per step (default 8)")
    parser.add_argument("--length", type=int, default=90, help="tokens per sequence (default 90)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    tokenizer = NgramTokenizer.from_file()
    input_ids = molecule_batch(args.batch, args.length, tokenizer)
    labels = input_ids.masked_fill(input_ids == tokenizer.pad_token_id, -100)
    models = build_models(len(tokenizer))

    tasks = {}
    for name, model in models.items():
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, betas=(0.9, 0.95), weight_decay=0.01)

        def step(model=model, optimizer=optimizer):
            loss = model(input_ids=input_ids, labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        tasks[name] = step

    timings = time_interleaved(tasks, args.repeats)
    tokens = args.batch * args.length
    gpt2_rate = tokens / timings["gpt2"][0]
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.machine()}, batch {args.batch}x{args.length}, repeats {args.repeats}")
    print("| model | parameters | median step ms | tokens/s | vs GPT-2 |")
    print("|---|---|---|---|---|")
    for name, (median, _) in timings.items():
        parameters = sum(p.numel() for p in models[name].parameters())
        rate = tokens / median
        print(f"| {name} | {parameters:,} | {median * 1000:.1f} | {rate:,.0f} | {rate / gpt2_rate:.2f}x |")


if __name__ == "__main__":
    main()
