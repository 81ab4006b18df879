"""Schema probes: what each learned schema prototype responds to, how much it matters, how they relate.

    python -m probes.schemas [CKPT] [--data PATH] [--seed 0] [--top-k 5] [--max-n 4]
    python -m probes.schemas CKPT_A --match CKPT_B

- ``readout``: the published readout, cosine similarity between each schema key
  and the key projection of every vocabulary embedding, top-k tokens a schema.
- ``ngrams``: schemas are read through queries in context, so this records the
  schema attention weights at every position of the corpus and lists, for each
  schema, the n-grams (windows of 1..n symbols ending at the position) on
  which it is most active, with counts, mean and max weight and an example.
- ``usage``: each schema's share of all attention and an activation histogram;
  dead and dominant schemas are flagged.
- ``ablation``: the change in held-out loss when one schema's value is zeroed.
- ``geometry``: schema-key cosine similarities, redundant pairs, a 2-D map
  (UMAP when ``umap-learn`` is installed, else PCA) and clusters.
- ``match_schemas(a, b)``: Hungarian matching of two checkpoints' schemas by key
  similarity, to follow them over training.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from scmt import patch
from scmt.checkpoint import load_checkpoint
from scmt.evaluate import token_loss
from scmt.molecules import pad_batch

from .common import ProbeResult, add_common_arguments, cached_run, default_checkpoint, load_probe_input, record, run_cli
from .targets import TargetError

PROBE_VERSION = 1
HISTOGRAM_BINS = 20
REDUNDANT_SIMILARITY = 0.9


def readout_table(model, tokenizer, top_k: int) -> pd.DataFrame:
    """Top-k tokens per schema by cosine(schema key, key_proj(token embedding)), as published."""
    with torch.no_grad():
        token_keys = model.key_proj(model.embed.weight)
        similarity = torch.nn.functional.normalize(model.schema_keys, dim=-1) @ torch.nn.functional.normalize(token_keys, dim=-1).T
        scores, indices = similarity.topk(min(top_k, similarity.shape[1]), dim=-1)
    rows = []
    for schema in range(similarity.shape[0]):
        for rank in range(scores.shape[1]):
            token_id = int(indices[schema, rank])
            token = tokenizer.convert_ids_to_tokens(token_id) if tokenizer is not None else str(token_id)
            rows.append({"schema": schema, "rank": rank, "token": token, "score": float(scores[schema, rank])})
    return pd.DataFrame(rows)


def ngram_table(probe, weights: list[torch.Tensor], max_n: int, top_k: int, min_count: int) -> pd.DataFrame:
    """For each schema, the corpus n-grams with the highest mean attention weight."""
    schemas = weights[0].shape[-1]
    records, weight_rows, contexts = [], [], []
    for ids, sequence_weights in zip(probe.sequences, weights):
        tokens = [probe.decode_token(token) for token in ids]
        for position in range(len(ids)):
            for n in range(1, max_n + 1):
                if position - n + 1 < 0:
                    break
                records.append((" ".join(tokens[position - n + 1 : position + 1]), n))
                weight_rows.append(sequence_weights[position])
                contexts.append(" ".join(tokens[max(0, position - 7) : position + 1]))
    frame = pd.DataFrame(records, columns=["ngram", "n"])
    stacked = torch.stack(weight_rows).numpy()
    frame[[f"w{schema}" for schema in range(schemas)]] = stacked
    frame["context"] = contexts
    grouped = frame.groupby(["ngram", "n"])
    counts = grouped.size().rename("count")
    means = grouped[[f"w{schema}" for schema in range(schemas)]].mean()
    maxima = grouped[[f"w{schema}" for schema in range(schemas)]].max()
    examples = grouped["context"].first()
    frequent = counts[counts >= min_count].index
    rows = []
    for schema in range(schemas):
        column = f"w{schema}"
        best = means.loc[frequent, column].sort_values(ascending=False).head(top_k)
        for rank, (key, mean) in enumerate(best.items()):
            rows.append(
                {
                    "schema": schema,
                    "rank": rank,
                    "ngram": key[0],
                    "n": key[1],
                    "count": int(counts[key]),
                    "mean_weight": float(mean),
                    "max_weight": float(maxima.loc[key, column]),
                    "example": examples[key],
                }
            )
    return pd.DataFrame(rows)


def usage_tables(weights: list[torch.Tensor]) -> tuple[pd.DataFrame, pd.DataFrame]:
    flat = torch.cat(weights)
    schemas = flat.shape[1]
    share = flat.sum(dim=0) / flat.sum()
    usage = pd.DataFrame(
        {
            "schema": range(schemas),
            "share": share.numpy(),
            "mean_weight": flat.mean(dim=0).numpy(),
            "max_weight": flat.max(dim=0).values.numpy(),
        }
    )
    # A schema is dead below a tenth of a uniform share and dominant above three times it.
    usage["dead"] = usage["share"] < 0.1 / schemas
    usage["dominant"] = usage["share"] > 3.0 / schemas
    edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    rows = []
    for schema in range(schemas):
        counts, _ = np.histogram(flat[:, schema].numpy(), bins=edges)
        for low, high, count in zip(edges[:-1], edges[1:], counts):
            rows.append({"schema": schema, "bin_low": float(low), "bin_high": float(high), "count": int(count)})
    return usage, pd.DataFrame(rows)


def heldout_loss(model, sequences: list[list[int]], pad_id: int, batch_size: int = 64) -> float:
    """Token-weighted next-token loss (nats) of token sequences, padded batch by batch."""
    total, count = 0.0, 0
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        batch, _ = pad_batch(chunk, max(len(row) for row in chunk), pad_id)
        mean, tokens = token_loss(model, batch, pad_id, batch_size)
        total += mean * tokens
        count += tokens
    return total / max(count, 1)


def ablation_table(model, sequences: list[list[int]], pad_id: int) -> pd.DataFrame:
    """Held-out loss change when each schema's contribution (its value vector) is removed."""
    base = heldout_loss(model, sequences, pad_id)
    rows = []
    for schema in range(model.config.num_schemas):

        def drop(weights, name, schema=schema):
            weights = weights.clone()
            weights[..., schema] = 0
            return weights

        with patch(model, {"hook_schema_weights": drop}):
            loss = heldout_loss(model, sequences, pad_id)
        rows.append({"schema": schema, "loss": loss, "delta_loss": loss - base})
    table = pd.DataFrame(rows)
    table.attrs["base_loss"] = base
    return table


def two_d_map(vectors: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    """2-D coordinates of the rows of ``vectors``: UMAP when installed (and enough rows), else PCA."""
    try:
        import umap

        if vectors.shape[0] >= 5:
            reducer = umap.UMAP(n_components=2, n_neighbors=min(15, vectors.shape[0] - 1), random_state=seed)
            return reducer.fit_transform(vectors), "umap"
    except ImportError:
        pass
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    _, _, basis = np.linalg.svd(centred, full_matrices=False)
    return centred @ basis[:2].T, "pca"


def geometry_tables(model, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    from scipy.cluster.hierarchy import fcluster, linkage

    keys = model.schema_keys.detach().double()
    normalised = torch.nn.functional.normalize(keys, dim=-1)
    similarity = (normalised @ normalised.T).numpy()
    schemas = similarity.shape[0]
    similarity_table = pd.DataFrame(
        [{"schema_a": a, "schema_b": b, "similarity": float(similarity[a, b])} for a in range(schemas) for b in range(schemas)]
    )
    pairs = similarity_table[(similarity_table["schema_a"] < similarity_table["schema_b"]) & (similarity_table["similarity"] >= REDUNDANT_SIMILARITY)]
    coordinates, method = two_d_map(normalised.numpy(), seed)
    distance = np.clip(1 - similarity[np.triu_indices(schemas, 1)], 0, None)
    clusters = fcluster(linkage(distance, method="average"), t=0.5, criterion="distance") if schemas > 1 else np.ones(1, dtype=int)
    layout = pd.DataFrame({"schema": range(schemas), "x": coordinates[:, 0], "y": coordinates[:, 1], "cluster": clusters})
    return similarity_table, pairs.reset_index(drop=True), layout, method


def schema_probe(
    checkpoint=None,
    data=None,
    seed: int = 0,
    limit: int | None = None,
    top_k: int = 5,
    max_n: int = 4,
    min_count: int = 3,
    refresh: bool = False,
) -> ProbeResult:
    """Run (or reuse) every schema probe; see the module docstring for the tables."""
    probe = load_probe_input(checkpoint, data, limit)
    model = probe.model
    pad_id = model.config.pad_token_id or 0

    def compute():
        recorded = record(model, probe.sequences, ["hook_schema_weights"])
        weights = [item["hook_schema_weights"].float() for item in recorded]
        usage, histogram = usage_tables(weights)
        ablation = ablation_table(model, probe.sequences, pad_id)
        similarity, redundant, layout, method = geometry_tables(model, seed)
        tables = {
            "readout": readout_table(model, probe.tokenizer, top_k),
            "ngrams": ngram_table(probe, weights, max_n, top_k, min_count),
            "usage": usage,
            "histogram": histogram,
            "ablation": ablation,
            "similarity": similarity,
            "redundant_pairs": redundant,
            "map": layout,
        }
        flat = torch.cat(weights)
        routing_entropy = float(-(flat * flat.clamp(min=1e-12).log()).sum(dim=-1).mean())
        values = {
            "num_schemas": model.config.num_schemas,
            "base_loss": ablation.attrs["base_loss"],
            "routing_entropy": routing_entropy,
            "uniform_routing_entropy": math.log(model.config.num_schemas),
            "map_method": method,
            "dead_schemas": int(usage["dead"].sum()),
            "dominant_schemas": int(usage["dominant"].sum()),
        }
        return tables, values

    options = {"data": probe.data_source, "top_k": top_k, "max_n": max_n, "min_count": min_count}
    return cached_run(probe, "schemas", PROBE_VERSION, seed, options, compute, refresh)


def match_schemas(checkpoint_a: str | Path, checkpoint_b: str | Path) -> pd.DataFrame:
    """Pair each schema of ``checkpoint_a`` with one of ``checkpoint_b`` (Hungarian, on key cosine)."""
    from scipy.optimize import linear_sum_assignment

    keys = []
    for checkpoint in (checkpoint_a, checkpoint_b):
        model = load_checkpoint(checkpoint)
        keys.append(torch.nn.functional.normalize(model.schema_keys.detach().double(), dim=-1))
    if keys[0].shape != keys[1].shape:
        raise TargetError(f"the checkpoints have {keys[0].shape[0]} and {keys[1].shape[0]} schemas of widths {keys[0].shape[1]} and {keys[1].shape[1]}: match checkpoints of one run")
    similarity = (keys[0] @ keys[1].T).numpy()
    rows, cols = linear_sum_assignment(-similarity)
    return pd.DataFrame({"schema_a": rows, "schema_b": cols, "similarity": similarity[rows, cols]})


def fragment_svg(ngram: str, size: int = 200) -> str | None:
    """Draw, as SVG, the molecule fragment an n-gram of SELFIES symbols decodes to; None when it decodes to none."""
    import selfies
    from rdkit import Chem, RDLogger
    from rdkit.Chem.Draw import rdMolDraw2D

    RDLogger.DisableLog("rdApp.*")
    try:
        smiles = selfies.decoder(ngram.replace(" ", ""))
    except selfies.DecoderError:
        return None
    molecule = Chem.MolFromSmiles(smiles) if smiles else None
    if molecule is None or molecule.GetNumAtoms() == 0:
        return None
    drawer = rdMolDraw2D.MolDraw2DSVG(size, size)
    drawer.DrawMolecule(molecule)
    drawer.FinishDrawing()
    return drawer.GetDrawingText()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m probes.schemas", description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.add_argument("--top-k", type=int, default=5, help="entries listed per schema (default 5)")
    parser.add_argument("--max-n", type=int, default=4, help="maximum n-gram length, in symbols (default 4)")
    parser.add_argument("--min-count", type=int, default=3, help="ignore n-grams seen fewer times (default 3)")
    parser.add_argument("--match", default=None, help="another checkpoint of the run: print the schema matching instead")
    args = parser.parse_args(argv)
    if args.top_k < 1 or args.max_n < 1 or args.min_count < 1:
        parser.error("--top-k, --max-n and --min-count must be at least 1")
    if args.match:
        try:
            matching = match_schemas(args.checkpoint or default_checkpoint(), args.match)
        except TargetError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(matching.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        return 0
    result = run_cli(
        lambda: schema_probe(args.checkpoint, args.data, args.seed, args.limit, args.top_k, args.max_n, args.min_count, args.refresh)
    )
    if result is None:
        return 2
    values = result.values
    print(
        f"{values['num_schemas']} schemas: routing entropy {values['routing_entropy']:.4f} nats "
        f"(uniform {values['uniform_routing_entropy']:.4f}), {values['dead_schemas']} dead, "
        f"{values['dominant_schemas']} dominant; 2-D map by {values['map_method']}"
    )
    readout = result["readout"]
    print("published readout (schema key vs token key):")
    for schema, group in readout.groupby("schema"):
        print(f"  Schema {schema:02d}: " + " | ".join(f"{row.token} ({row.score:.3f})" for row in group.itertuples()))
    print("most active n-grams in context:")
    for schema, group in result["ngrams"].groupby("schema"):
        print(f"  Schema {schema:02d}: " + " | ".join(f"{row.ngram} ({row.mean_weight:.4f}, n={row.count})" for row in group.itertuples()))
    ablation = result["ablation"].sort_values("delta_loss", ascending=False)
    print(f"ablation (held-out loss {values['base_loss']:.4f}), largest increases:")
    print(ablation.head(5).to_string(index=False, float_format=lambda x: f"{x:.5f}"))
    print(f"redundant pairs (key cosine >= {REDUNDANT_SIMILARITY}): {len(result['redundant_pairs'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
