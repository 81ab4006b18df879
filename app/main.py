"""Checkpoint browser for SCMT runs.

    streamlit run app/main.py [-- --root DIR]

Browses a checkpoint root (default: the shipped demo runs): overview and
training curves, schemas, entropy, memory, leakage reports, and two
checkpoints side by side. It reads checkpoints and writes only probe results
and gate reports (under each checkpoint's ``probe_results/``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

APP_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(APP_DIR.parent))

# The shipped demo runs; torch is imported only when a page needs a model, to keep start-up fast.
DEMO_RUNS = APP_DIR.parent / "checkpoints"
CAUSAL_SWITCHES = ("prefix_entropy_norm", "read_as_of_step", "zero_empty_read", "carry_write_times")

PAGES = ("Overview", "Schemas", "Entropy", "Memory", "Leakage", "Compare")


def command_line_root() -> str:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--root", default=str(DEMO_RUNS))
    known, _ = parser.parse_known_args(sys.argv[1:])
    return known.root


def find_checkpoints(root: Path) -> dict[str, list[Path]]:
    """Runs under ``root`` and their checkpoint directories, in step order."""
    runs: dict[str, list[Path]] = {}
    for config in sorted(root.glob("*/checkpoint-*/config.json")):
        runs.setdefault(config.parent.parent.name, []).append(config.parent)
    for checkpoints in runs.values():
        checkpoints.sort(key=lambda path: int(path.name.split("-")[-1]) if path.name.split("-")[-1].isdigit() else -1)
    return runs


@st.cache_resource(show_spinner="Loading checkpoint…")
def load_model(path: str):
    from probes.targets import load_target

    return load_target(path)


@st.cache_data(show_spinner="Running the probe…")
def probe_tables(kind: str, path: str) -> tuple[dict[str, pd.DataFrame], dict]:
    from probes.entropy import entropy_probe
    from probes.memory import memory_probe
    from probes.schemas import schema_probe

    probe = {"entropy": entropy_probe, "memory": memory_probe, "schemas": schema_probe}[kind]
    result = probe(path)
    return result.tables, result.values


def log_history(path: Path) -> pd.DataFrame:
    state = path / "trainer_state.json"
    if not state.is_file():
        return pd.DataFrame()
    return pd.DataFrame(json.loads(state.read_text(encoding="utf-8")).get("log_history", []))


def is_scmt(path: Path) -> bool:
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    return config.get("model_type", "scmt") == "scmt"


def parameter_count(path: Path) -> int | None:
    """Parameters stored in model.safetensors, read from its header alone (tied tensors once)."""
    weights = path / "model.safetensors"
    if not weights.is_file():
        return None
    with weights.open("rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
    total = 0
    for name, entry in header.items():
        if name != "__metadata__":
            count = 1
            for dimension in entry["shape"]:
                count *= dimension
            total += count
    return total


def model_mode(config: dict) -> str:
    if config.get("model_type", "scmt") != "scmt":
        return config.get("model_type", "?")
    flags = [bool(config.get(name, False)) for name in CAUSAL_SWITCHES]
    if all(flags):
        return "strict"
    if not any(flags):
        return "legacy"
    return "custom"


def page_overview(path: Path) -> None:
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    parameters = parameter_count(path)
    mode = model_mode(config)
    columns = st.columns(3)
    columns[0].metric("parameters", f"{parameters:,}" if parameters is not None else "n/a")
    columns[1].metric("mode", mode)
    columns[2].metric("vocabulary", config.get("vocab_size"))
    history = log_history(path)
    if history.empty:
        st.info("No trainer_state.json: this checkpoint carries no training curves.")
    else:
        train = history.dropna(subset=["loss"]) if "loss" in history else history.iloc[0:0]
        metrics = [name for name in ("lm_loss", "loss", "importance_entropy", "importance_l2", "schema_utility", "memory_occupancy", "write_rate") if name in train]
        st.plotly_chart(px.line(train, x="step", y=metrics, title="training curves"), key="curves")
        evaluation = history.dropna(subset=["eval_loss"]) if "eval_loss" in history else history.iloc[0:0]
        if not evaluation.empty:
            st.plotly_chart(px.line(evaluation, x="step", y="eval_loss", markers=True, title="held-out loss"), key="eval")
    st.subheader("config")
    st.json(config, expanded=False)


def page_schemas(path: Path) -> None:
    tables, values = probe_tables("schemas", str(path))
    st.write(
        f"{values['num_schemas']} schemas; routing entropy {values['routing_entropy']:.4f} nats "
        f"(uniform {values['uniform_routing_entropy']:.4f}); {values['dead_schemas']} dead, {values['dominant_schemas']} dominant."
    )
    st.subheader("most active n-grams in context")
    st.dataframe(tables["ngrams"], key="ngrams")
    show_fragments(tables["ngrams"])
    st.subheader("published readout")
    st.dataframe(tables["readout"], key="readout")
    similarity = tables["similarity"].pivot(index="schema_a", columns="schema_b", values="similarity")
    st.plotly_chart(px.imshow(similarity, title="schema key similarity"), key="similarity")
    layout = tables["map"].assign(cluster=lambda frame: frame["cluster"].astype(str))
    figure = px.scatter(layout, x="x", y="y", color="cluster", text="schema", title=f"2-D map ({values['map_method']})")
    figure.update_traces(textposition="top center")
    st.plotly_chart(figure, key="map")
    st.plotly_chart(px.bar(tables["ablation"], x="schema", y="delta_loss", title="held-out loss change when ablated"), key="ablation")
    drift = schema_drift(str(path.parent), path.name)
    if not drift.empty:
        drift = drift.assign(schema=drift["schema"].astype(str))
        figure = px.line(
            drift, x="step", y="similarity", color="schema", color_discrete_sequence=px.colors.qualitative.Alphabet,
            title="key cosine to the matched schema of this checkpoint",
        )
        st.plotly_chart(figure, key="drift")


def show_fragments(ngrams: pd.DataFrame, limit: int = 6) -> None:
    """Draw the molecule fragments of the top n-grams that decode to one."""
    from probes.schemas import fragment_svg

    top = ngrams[ngrams["rank"] == 0].drop_duplicates("ngram").head(limit)
    columns = st.columns(max(1, len(top)))
    for column, row in zip(columns, top.itertuples()):
        svg = fragment_svg(row.ngram, size=160)
        if svg:
            column.image(svg, caption=f"schema {row.schema}: {row.ngram}")


@st.cache_data(show_spinner="Matching schemas across the run…")
def schema_drift(run: str, current: str) -> pd.DataFrame:
    """Per schema of ``current``, its key cosine to the matched schema at each checkpoint of the run."""
    from probes.schemas import match_schemas

    frames = []
    for checkpoint in find_checkpoints(Path(run).parent).get(Path(run).name, []):
        step = int(checkpoint.name.split("-")[-1]) if checkpoint.name.split("-")[-1].isdigit() else -1
        matching = match_schemas(Path(run) / current, checkpoint)
        frames.append(pd.DataFrame({"step": step, "schema": matching["schema_a"], "similarity": matching["similarity"]}))
    return pd.concat(frames) if frames else pd.DataFrame()


def typed_sequence_ids(text: str, tokenizer) -> list[int]:
    """Token ids of a typed molecule: SELFIES as given, SMILES converted first. Raises ValueError."""
    import selfies

    text = text.strip()
    if not text.startswith("["):
        from rdkit import Chem, RDLogger

        RDLogger.DisableLog("rdApp.*")
        if Chem.MolFromSmiles(text) is None:
            raise ValueError(f"{text!r} is not a valid SMILES (nor SELFIES, which starts with '[')")
        text = selfies.encoder(text)
    else:
        try:
            selfies.decoder(text)
        except selfies.DecoderError as error:
            raise ValueError(f"{text!r} is not valid SELFIES ({error})") from None
    return tokenizer(text, add_special_tokens=True)["input_ids"]


def typed_entropy_curve(path: Path, text: str) -> pd.DataFrame:
    import torch

    from scmt import trace

    target = load_model(str(path))
    ids = typed_sequence_ids(text, target.tokenizer)
    limit = target.model.config.max_len
    if len(ids) > limit:
        st.warning(f"The molecule has {len(ids)} tokens; only the first {limit} (the model's max_len) are traced.")
        ids = ids[:limit]
    unknown = sum(token == target.tokenizer.unk_token_id for token in ids)
    if unknown:
        st.warning(f"{unknown} symbol(s) are not in this checkpoint's vocabulary and are traced as <unk>.")
    names = ["hook_entropy", "hook_entropy_norm", "hook_threshold", "hook_write"]
    with torch.no_grad(), trace(target.model, names) as cache:
        target.model(torch.tensor([ids]))
    return pd.DataFrame(
        {
            "position": range(len(ids)),
            "token": target.tokenizer.convert_ids_to_tokens(ids),
            "entropy": cache["hook_entropy"][0].double().numpy(),
            "entropy_norm": cache["hook_entropy_norm"][0].double().numpy(),
            "threshold": cache["hook_threshold"][0].double().numpy(),
            "wrote": cache["hook_write"][0].numpy(),
        }
    )


def page_entropy(path: Path) -> None:
    typed = st.text_input("type a molecule (SMILES or SELFIES) to trace it", key="typed_molecule")
    if typed.strip():
        try:
            rows = typed_entropy_curve(path, typed)
        except ValueError as error:
            st.error(str(error))
        else:
            figure = px.line(rows, x="position", y=["entropy", "entropy_norm", "threshold"], hover_data=["token"], title="typed molecule")
            writes = rows[rows["wrote"]]
            figure.add_scatter(x=writes["position"], y=writes["entropy_norm"], mode="markers", name="write")
            st.plotly_chart(figure, key="typed_curve")
    tables, values = probe_tables("entropy", str(path))
    st.write(f"Entropy predicts next-token loss: Pearson {values['pearson_entropy_loss']:.3f}, Spearman {values['spearman_entropy_loss']:.3f}.")
    by_position = tables["by_position"]
    st.plotly_chart(px.line(by_position, x="position", y=["entropy_mean", "entropy_norm_mean", "threshold_mean"], title="mean over the probe set"), key="aggregate")
    per_position = tables["per_position"]
    sequence = st.number_input("sequence", min_value=0, max_value=int(per_position["sequence"].max()), value=0, key="entropy_sequence")
    rows = per_position[per_position["sequence"] == sequence]
    figure = px.line(rows, x="position", y=["entropy", "entropy_norm", "threshold"], hover_data=["token"], title=f"sequence {sequence}")
    writes = rows[rows["wrote"]]
    figure.add_scatter(x=writes["position"], y=writes["entropy_norm"], mode="markers", name="write")
    st.plotly_chart(figure, key="sequence_curve")


def page_memory(path: Path) -> None:
    tables, values = probe_tables("memory", str(path))
    st.write(
        f"{values['mode']} mode, {values['mem_size']} slots: write rate {values['write_rate']:.1%}, "
        f"reads with nothing visible {values['empty_read_rate']:.1%}, {values['evictions']} evictions."
    )
    st.plotly_chart(px.line(tables["occupancy"], x="position", y="occupancy_mean", title="occupancy against position"), key="occupancy")
    per_position = tables["per_position"]
    sequence = st.number_input("sequence", min_value=0, max_value=int(per_position["sequence"].max()), value=0, key="memory_sequence")
    rows = per_position[per_position["sequence"] == sequence]
    st.plotly_chart(px.scatter(rows, x="position", y="slot", color="wrote", hover_data=["token", "evicted_written_at"], title="writes and slots"), key="timeline")
    st.caption(
        f"Slot -1: the position did not write. Slot {values['mem_size']}: the write overflowed the "
        f"{values['mem_size']} slots, so a prune evicted the lowest-scoring entry."
    )
    st.dataframe(rows[["position", "token", "wrote", "slot", "evicted_written_at", "visible_entries", "top_reads"]], key="trace")


def page_leakage(path: Path) -> None:
    report_path = path / "probe_results" / "leakage.json"
    if report_path.is_file():
        report = json.loads(report_path.read_text(encoding="utf-8"))
    else:
        st.info("No gate report yet for this checkpoint.")
        if not st.button("Run the gate", key="run_gate"):
            return
        from probes.leakage import run_gate

        with st.spinner("Running the leakage gate…"):
            report = run_gate(load_model(str(path)), trials=256).to_dict()
        report_path.parent.mkdir(exist_ok=True)
        report_path.write_text(json.dumps(report, indent=2), encoding="utf-8")
        # Show the stored report as a fresh page, without the "no report yet" prompt.
        st.rerun()
    verdict = report["verdict"]
    (st.error if verdict == "leak" else st.success)(f"verdict: {verdict} ({report['dtype']}, seed {report['seed']})")
    checks = pd.DataFrame(
        [{"check": name, **{key: value for key, value in check.items() if key in ("status", "trials", "leaking", "leak_rate", "leak_rate_upper_95", "max_delta")}} for name, check in report["checks"].items()]
    )
    st.dataframe(checks, key="checks")
    if report.get("mechanisms"):
        st.subheader("mechanisms")
        st.dataframe(pd.DataFrame(report["mechanisms"])[["share", "fixed_by", "explanation"]], key="mechanisms")
    worst = report["checks"].get("future_perturbation", {}).get("worst")
    if worst:
        st.subheader("worst example")
        st.json(worst)


def column_key(path: Path) -> str:
    return f"{path.parent.name}_{path.name}"


def page_compare(runs: dict[str, list[Path]], current: Path) -> None:
    checkpoints = {f"{path.parent.name}/{path.name}": path for paths in runs.values() for path in paths}
    labels = list(checkpoints)
    current_label = f"{current.parent.name}/{current.name}"
    left, right = st.columns(2)
    first = left.selectbox("left", labels, index=labels.index(current_label) if current_label in labels else 0, key="compare_left")
    second = right.selectbox("right", labels, index=len(labels) - 1, key="compare_right")
    for column, label in ((left, first), (right, second)):
        path = checkpoints[label]
        try:
            compare_column(column, path)
        except Exception as error:  # noqa: BLE001  (one unreadable side must not blank the other)
            column.error(f"{label} could not be shown: {error}")


def compare_column(column, path: Path) -> None:
    history = log_history(path)
    evaluations = history.dropna(subset=["eval_loss"]) if "eval_loss" in history else history.iloc[0:0]
    column.metric("held-out loss", f"{evaluations['eval_loss'].iloc[-1]:.4f}" if not evaluations.empty else "n/a")
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    column.metric("mode", model_mode(config))
    if is_scmt(path):
        tables, values = probe_tables("memory", str(path))
        column.metric("write rate", f"{values['write_rate']:.1%}")
        column.metric("reads with nothing visible", f"{values['empty_read_rate']:.1%}")
        column.plotly_chart(px.line(tables["occupancy"], x="position", y="occupancy_mean", title="occupancy"), key=f"occupancy_{column_key(path)}")
    report = path / "probe_results" / "leakage.json"
    if report.is_file():
        column.metric("gate verdict", json.loads(report.read_text(encoding="utf-8"))["verdict"])


def main() -> None:
    st.set_page_config(page_title="SCMT checkpoint browser", layout="wide")
    root_text = st.sidebar.text_input("checkpoint root", value=command_line_root(), key="root")
    root = Path(root_text)
    if root.exists() and not root.is_dir():
        st.error(f"Checkpoint root {root} is not a directory: enter a directory that holds runs.")
        return
    if not root.is_dir():
        st.error(f"Checkpoint root {root} not found: enter a directory that holds runs.")
        return
    runs = find_checkpoints(root)
    if not runs:
        st.error(f"{root} holds no checkpoint (expected RUN/checkpoint-N/config.json).")
        return
    run = st.sidebar.selectbox("run", list(runs), key="run")
    checkpoint = st.sidebar.selectbox("checkpoint", [path.name for path in runs[run]], index=len(runs[run]) - 1, key="checkpoint")
    page = st.sidebar.radio("page", PAGES, key="page")
    path = root / run / checkpoint
    st.title(f"{run} / {checkpoint}")
    try:
        if page == "Compare":
            page_compare(runs, path)
        elif page in ("Schemas", "Entropy", "Memory") and not is_scmt(path):
            st.warning(f"{page} probes need an SCMT checkpoint; {run} is another model.")
        else:
            {"Overview": page_overview, "Schemas": page_schemas, "Entropy": page_entropy, "Memory": page_memory, "Leakage": page_leakage}[page](path)
    except Exception as error:  # noqa: BLE001  (an unloadable checkpoint must not take the app down)
        st.error(f"{path} could not be shown: {error}")


main()
