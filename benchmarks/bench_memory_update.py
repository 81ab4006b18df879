"""Time the memory update alone: the published per-token loop against the vectorised one.

    python benchmarks/bench_memory_update.py [--threads 2] [--repeats 10]

Both run on the same recorded encoder states, entropy and thresholds of a
legacy-mode SCMT at the published default config on packed real molecules,
with fresh memory (no pruning at mem_size 128) and with a carried, full memory
(every write prunes).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from scmt import SCMTConfig, SCMTForCausalLM, trace
from scmt.reference_loop import loop_memory_update
from scmt.tokenization import NgramTokenizer

from bench_model import molecule_batch


def median_ms(task, repeats: int) -> float:
    task()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        task()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--repeats", type=int, default=10, help="timed repeats per case (default 10)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokenizer = NgramTokenizer.from_file()

    print("| size | memory in | published loop ms | vectorised ms | speed-up |")
    print("|---|---|---|---|---|")
    for batch, length in ((8, 90), (32, 256)):
        torch.manual_seed(0)
        model = SCMTForCausalLM(SCMTConfig(vocab_size=len(tokenizer), mode="legacy")).eval()
        input_ids = molecule_batch(batch, length, tokenizer)
        names = ["hook_embed", "hook_encoder_out", "hook_entropy_norm", "hook_threshold", "hook_write"]
        with torch.no_grad():
            carried = model(input_ids).memory
            carried = carried.detached()
            for label, memory in (("none", None), ("full", carried)):
                with trace(model, names) as cache:
                    model(input_ids, memory=memory, position_offset=length if memory is not None else 0)
                keys = model.key_proj(cache["hook_encoder_out"])
                offset = length if memory is not None else 0

                def vectorised():
                    model._update_memory(memory, keys, cache["hook_embed"], cache["hook_write"], offset, False)[0].keys

                def loop():
                    loop_memory_update(
                        model, cache["hook_encoder_out"], cache["hook_embed"], cache["hook_entropy_norm"],
                        cache["hook_threshold"], memory=memory, offset=offset,
                    )

                fast = median_ms(vectorised, args.repeats)
                slow = median_ms(loop, max(2, args.repeats // 5))
                print(f"| {batch}x{length} | {label} | {slow:.1f} | {fast:.2f} | {slow / fast:.0f}x |", flush=True)


if __name__ == "__main__":
    main()
