"""Train SCMT (legacy or strict) or a GPT-2 baseline of the same size.

    python -m scmt.train --output-dir runs/strict [--model scmt --mode strict] [options]

Built on the HuggingFace ``Trainer``, so multi-GPU and multi-node runs work
through ``torchrun`` or ``accelerate launch`` unchanged. Defaults follow the
published SCMT trainer: the shipped molecules as SELFIES, sequences of 90
tokens right-padded (pads are inputs, not targets), batch 8, AdamW with lr
2e-4, betas (0.9, 0.95) and weight decay 0.01, a seeded 90/10 split, and the
LM loss plus the three auxiliary terms.

Every checkpoint directory loads with ``from_pretrained`` and carries the
tokenizer, ``trainer_state.json`` (whose ``log_history`` has the LM and
auxiliary losses, eval loss and perplexity, memory occupancy and write rate,
schema utility and routing entropy), the run configuration and a fixed probe
set of held-out sequences.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import sys
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

from .configuration_scmt import SCMTConfig
from .data import (
    PROBE_SET_FILE,
    Corpus,
    LanguageModelingDataset,
    encode_texts,
    load_molecules,
    load_text,
    make_probe_set,
    save_probe_set,
    split_indices,
)
from .modeling_scmt import SCMTCausalLMOutput, SCMTForCausalLM
from .tokenization import build_selfies_symbol_tokenizer, load_ngram_tokenizer, train_bpe_tokenizer

RUN_CONFIG_FILE = "run_config.json"
# Options that may change between a run and its resumption without making it another run.
RESUMABLE_OPTIONS = {"resume", "no_progress", "logging_steps", "epochs", "max_steps", "output_dir"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scmt.train", description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", required=True, help="run directory; checkpoints go to OUTPUT_DIR/checkpoint-N")
    parser.add_argument("--model", choices=("scmt", "gpt2"), default="scmt", help="architecture (default scmt)")
    parser.add_argument("--mode", choices=("legacy", "strict"), default="strict", help="SCMT causal mode (default strict)")
    parser.add_argument("--data", default=None, help="CSV of SMILES (default: the shipped molecules) or, with --text, a text file")
    parser.add_argument("--column", default="SMILES", help="CSV column holding the SMILES (default SMILES)")
    parser.add_argument("--text", action="store_true", help="treat --data as a text corpus, one sequence a line")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N sequences of the data")
    parser.add_argument(
        "--tokenizer",
        choices=("symbols", "ngram", "bpe"),
        default=None,
        help="symbols: one token per SELFIES symbol (default for molecules); ngram: the published n-gram "
        "vocabulary; bpe: byte-level BPE trained on the corpus (default for text)",
    )
    parser.add_argument("--bpe-vocab-size", type=int, default=2000, help="BPE vocabulary size (default 2000)")
    parser.add_argument("--seq-len", type=int, default=90, help="tokens per training sequence (default 90)")
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per step and device (default 8)")
    parser.add_argument("--lr", type=float, default=2e-4, help="AdamW learning rate (default 2e-4)")
    parser.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default 0.01)")
    parser.add_argument("--epochs", type=float, default=1.0, help="passes over the training split (default 1)")
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (overrides --epochs)")
    parser.add_argument("--seed", type=int, default=2025, help="seed of the split, the weights and the batches (default 2025)")
    parser.add_argument("--eval-fraction", type=float, default=0.1, help="held-out share of the data (default 0.1)")
    parser.add_argument("--save-steps", type=int, default=500, help="checkpoint and evaluate every N steps (default 500)")
    parser.add_argument("--logging-steps", type=int, default=50, help="log training metrics every N steps (default 50)")
    parser.add_argument("--probe-size", type=int, default=256, help="held-out sequences in the probe set (default 256)")
    parser.add_argument("--d-model", type=int, default=256, help="hidden size (default 256)")
    parser.add_argument("--nhead", type=int, default=8, help="attention heads (default 8)")
    parser.add_argument("--num-layers", type=int, default=4, help="layers (default 4)")
    parser.add_argument("--max-len", type=int, default=256, help="position table length (default 256)")
    parser.add_argument("--mem-size", type=int, default=128, help="SCMT memory slots (default 128)")
    parser.add_argument("--num-schemas", type=int, default=32, help="SCMT schema prototypes (default 32)")
    parser.add_argument("--save-only-model", action="store_true", help="omit optimizer state from checkpoints (smaller; no resume)")
    parser.add_argument("--resume", action="store_true", help="continue the run in OUTPUT_DIR from its latest checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    positive = ("seq_len", "batch_size", "save_steps", "logging_steps", "probe_size", "d_model", "nhead", "num_layers", "max_len", "mem_size", "num_schemas")
    for name in positive:
        value = getattr(args, name)
        if value < 1:
            parser.error(f"--{name.replace('_', '-')} {value}: it must be at least 1")
    if args.lr <= 0:
        parser.error(f"--lr {args.lr}: it must be positive")
    if args.seq_len > args.max_len:
        parser.error(f"--seq-len {args.seq_len} exceeds --max-len {args.max_len}: raise --max-len or shorten sequences")
    if args.d_model % args.nhead:
        parser.error(f"--d-model {args.d_model} is not a multiple of --nhead {args.nhead}")
    if args.limit is not None and args.limit < 2:
        parser.error(f"--limit {args.limit}: a split needs at least 2 sequences")
    if args.text and args.data is None:
        parser.error("--text needs --data PATH of a text corpus")
    if args.text and args.tokenizer in ("symbols", "ngram"):
        parser.error(f"--tokenizer {args.tokenizer} reads SELFIES: use --tokenizer bpe for a text corpus")
    if not 0 < args.eval_fraction < 1:
        parser.error(f"--eval-fraction {args.eval_fraction}: it must lie strictly between 0 and 1")
    if args.epochs <= 0 and args.max_steps <= 0:
        parser.error("pass a positive --epochs or --max-steps")


def file_fingerprint(path: str | None) -> str:
    """SHA-256 of a data file (of the shipped molecule file when ``path`` is None)."""
    from .molecules import default_molecules_path

    target = Path(path) if path is not None else default_molecules_path()
    digest = hashlib.sha256()
    with target.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_identity(args: argparse.Namespace) -> dict:
    return {key: value for key, value in sorted(vars(args).items()) if key not in RESUMABLE_OPTIONS}


def prepare_output_dir(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Path:
    """Check the run directory: new or empty, or (with --resume) this same run; never overwrite another.

    With --resume the recorded options are adopted, so only the options that may
    change (steps, epochs, logging, progress) need to be passed again.
    """
    output = Path(args.output_dir)
    record = output / RUN_CONFIG_FILE
    if output.exists() and not output.is_dir():
        raise SystemExit(f"error: --output-dir {output} is a file: choose a directory")
    if args.resume:
        if not record.is_file():
            raise SystemExit(f"error: --resume: {output} contains no scmt run to resume")
        if not any(output.glob("checkpoint-*")):
            raise SystemExit(f"error: --resume: {output} has no checkpoint yet: delete the directory to start again")
        previous = json.loads(record.read_text(encoding="utf-8")).get("options", {})
        explicit = {key for key, value in vars(args).items() if value != parser.get_default(key)}
        changed = sorted(
            key for key in explicit - RESUMABLE_OPTIONS if key in previous and previous[key] != getattr(args, key)
        )
        if changed:
            raise SystemExit(
                f"error: --resume continues the recorded run, but these options differ from it: {', '.join(changed)}: "
                f"drop them, or train into a new directory"
            )
        for key, value in previous.items():
            if key not in RESUMABLE_OPTIONS:
                setattr(args, key, value)
        return output
    if output.exists() and any(output.iterdir()):
        if not record.is_file():
            raise SystemExit(f"error: --output-dir {output} is not empty and contains no scmt run: choose an empty or new directory")
        previous = json.loads(record.read_text(encoding="utf-8")).get("options", {})
        current = run_identity(args)
        changed = sorted(key for key in set(previous) | set(current) if previous.get(key) != current.get(key))
        if changed:
            raise SystemExit(
                f"error: --output-dir {output} contains a different run (options differ: {', '.join(changed)}): "
                f"choose a new directory"
            )
        raise SystemExit(f"error: --output-dir {output} already contains this run: pass --resume to continue it")
    return output


def load_corpus(args: argparse.Namespace) -> Corpus:
    if args.text:
        return load_text(args.data, limit=args.limit)
    return load_molecules(args.data, column=args.column, limit=args.limit)


def build_tokenizer(args: argparse.Namespace, corpus: Corpus, train_texts: list[str]):
    choice = args.tokenizer or ("bpe" if corpus.kind == "text" else "symbols")
    if choice == "ngram":
        return load_ngram_tokenizer(), choice
    if choice == "bpe":
        return train_bpe_tokenizer(train_texts, vocab_size=args.bpe_vocab_size), choice
    return build_selfies_symbol_tokenizer(train_texts), choice


def build_model(args: argparse.Namespace, tokenizer) -> torch.nn.Module:
    torch.manual_seed(args.seed)
    special = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    if args.model == "gpt2":
        config = GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=args.max_len,
            n_embd=args.d_model,
            n_layer=args.num_layers,
            n_head=args.nhead,
            **special,
        )
        return GPT2LMHeadModel(config)
    config = SCMTConfig(
        vocab_size=len(tokenizer),
        d_model=args.d_model,
        nhead=args.nhead,
        num_layers=args.num_layers,
        max_len=args.max_len,
        mem_size=args.mem_size,
        num_schemas=args.num_schemas,
        mode=args.mode,
        **special,
    )
    return SCMTForCausalLM(config)


class SCMTTrainer(Trainer):
    """``Trainer`` that logs SCMT's auxiliary losses and memory and schema statistics.

    Training minimises the full objective (LM loss plus auxiliary terms);
    evaluation reports the LM loss alone, so that ``eval_perplexity`` is
    ``exp(eval_loss)`` and comparable with a GPT-2 baseline.
    """

    def __init__(self, *args, pad_token_id: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pad_token_id = pad_token_id
        self._sums: dict[str, float] = {}
        self._count = 0
        self._routing_entropy: list[float] = []
        if isinstance(self.model, SCMTForCausalLM):
            self.model.hook_schema_weights.register_forward_hook(self._record_routing_entropy)

    def _record_routing_entropy(self, module, inputs, weights) -> None:
        if module.training:
            with torch.no_grad():
                entropy = -(weights * torch.log(weights.clamp(min=1e-12))).sum(dim=-1).mean()
            self._routing_entropy.append(float(entropy))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(input_ids=inputs["input_ids"], labels=inputs["labels"])
        if isinstance(outputs, SCMTCausalLMOutput):
            loss = outputs.loss if model.training else outputs.lm_loss
            if model.training:
                self._accumulate(outputs, inputs["input_ids"])
        else:
            loss = outputs.loss
        return (loss, outputs) if return_outputs else loss

    @torch.no_grad()
    def _accumulate(self, outputs: SCMTCausalLMOutput, input_ids: torch.Tensor) -> None:
        real = input_ids != self.pad_token_id
        values = {
            "lm_loss": float(outputs.lm_loss),
            **{name: float(value) for name, value in outputs.aux_losses.items()},
            "write_rate": float(outputs.write_mask[real].float().mean()) if real.any() else 0.0,
            "memory_occupancy": float(outputs.memory.occupied.float().mean()),
        }
        if self._routing_entropy:
            values["schema_routing_entropy"] = self._routing_entropy.pop()
        for name, value in values.items():
            self._sums[name] = self._sums.get(name, 0.0) + value
        self._count += 1

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._count:
            for name, total in self._sums.items():
                logs[name] = total / self._count
            model = self.model
            if isinstance(model, SCMTForCausalLM):
                logs["schema_utility_ema"] = float(model.schema_utility_sum.mean())
            self._sums, self._count = {}, 0
        if "eval_loss" in logs:
            logs["eval_perplexity"] = math.exp(min(logs["eval_loss"], 50.0))
        super().log(logs, start_time)


class RunFilesCallback(TrainerCallback):
    """Copy the run configuration and the probe set into every checkpoint; save at the last step."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def on_step_end(self, args, state, control, **kwargs):
        if state.max_steps and state.global_step >= state.max_steps:
            control.should_save = True
            control.should_evaluate = True
        return control

    def on_save(self, args, state, control, **kwargs):
        checkpoint = self.run_dir / f"checkpoint-{state.global_step}"
        if checkpoint.is_dir():
            for name in (RUN_CONFIG_FILE, PROBE_SET_FILE):
                shutil.copy2(self.run_dir / name, checkpoint / name)
        return control


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(args, parser)
    output = prepare_output_dir(args, parser)
    started = time.time()

    try:
        corpus = load_corpus(args)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    if corpus.failed:
        print(f"{len(corpus.failed)} of {len(corpus.failed) + len(corpus.texts)} SMILES failed SELFIES conversion and were left out", file=sys.stderr)

    train_index, eval_index = split_indices(len(corpus.texts), args.seed, args.eval_fraction)
    train_texts = [corpus.texts[i] for i in train_index]
    eval_texts = [corpus.texts[i] for i in eval_index]
    tokenizer, tokenizer_kind = build_tokenizer(args, corpus, train_texts)

    train_split = encode_texts(tokenizer, train_texts, args.seq_len)
    eval_split = encode_texts(tokenizer, eval_texts, args.seq_len)
    truncated = train_split.truncated + eval_split.truncated
    if truncated:
        print(f"{truncated} sequences were longer than --seq-len {args.seq_len} tokens and were truncated", file=sys.stderr)

    record = {
        "options": run_identity(args),
        "tokenizer": tokenizer_kind,
        "vocab_size": len(tokenizer),
        "data": {
            "kind": corpus.kind,
            "source": corpus.source,
            "sha256": file_fingerprint(args.data),
            "sequences": len(corpus.texts),
            "failed_conversion": len(corpus.failed),
            "train": len(train_texts),
            "eval": len(eval_texts),
            "truncated": truncated,
        },
    }
    # The directory is created only now, so a run that fails on its data leaves nothing behind.
    output.mkdir(parents=True, exist_ok=True)
    (output / RUN_CONFIG_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
    save_probe_set(make_probe_set(tokenizer, eval_texts, args.seed, args.probe_size, args.seq_len), output)

    model = build_model(args, tokenizer)
    training_args = TrainingArguments(
        output_dir=str(output),
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=max(args.batch_size, 32),
        learning_rate=args.lr,
        adam_beta1=0.9,
        adam_beta2=0.95,
        weight_decay=args.weight_decay,
        lr_scheduler_type="constant",
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        logging_steps=args.logging_steps,
        eval_strategy="steps",
        eval_steps=args.save_steps,
        save_strategy="steps",
        save_steps=args.save_steps,
        save_only_model=args.save_only_model,
        prediction_loss_only=True,
        seed=args.seed,
        data_seed=args.seed,
        report_to="none",
        disable_tqdm=args.no_progress,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    trainer = SCMTTrainer(
        model=model,
        args=training_args,
        train_dataset=LanguageModelingDataset(train_split.input_ids, tokenizer.pad_token_id),
        eval_dataset=LanguageModelingDataset(eval_split.input_ids, tokenizer.pad_token_id),
        processing_class=tokenizer,
        callbacks=[RunFilesCallback(output)],
        pad_token_id=tokenizer.pad_token_id,
    )
    trainer.train(resume_from_checkpoint=True if args.resume else None)

    # wall_seconds covers this invocation only (after --resume, the resumed part).
    summary = {"wall_seconds": round(time.time() - started, 1), "global_step": trainer.state.global_step}
    evaluations = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    if evaluations:
        summary["eval_loss"] = evaluations[-1]["eval_loss"]
        summary["eval_perplexity"] = evaluations[-1]["eval_perplexity"]
    (output / "train_summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
