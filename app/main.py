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

from probes.targets import DEMO_RUNS  # noqa: E402

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


def page_overview(path: Path) -> None:
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    target = load_model(str(path))
    parameters = sum(p.numel() for p in target.model.parameters())
    mode = getattr(target.model.config, "causal_mode", config.get("model_type", "?"))
    columns = st.columns(3)
    columns[0].metric("parameters", f"{parameters:,}")
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
    st.subheader("published readout")
    st.dataframe(tables["readout"], key="readout")
    similarity = tables["similarity"].pivot(index="schema_a", columns="schema_b", values="similarity")
    st.plotly_chart(px.imshow(similarity, title="schema key similarity"), key="similarity")
    st.plotly_chart(px.scatter(tables["map"], x="x", y="y", color="cluster", text="schema", title=f"2-D map ({values['map_method']})"), key="map")
    st.plotly_chart(px.bar(tables["ablation"], x="schema", y="delta_loss", title="held-out loss change when ablated"), key="ablation")


def page_entropy(path: Path) -> None:
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


def page_compare(runs: dict[str, list[Path]]) -> None:
    choices = [str(path) for checkpoints in runs.values() for path in checkpoints]
    left, right = st.columns(2)
    first = left.selectbox("left", choices, index=0, key="compare_left")
    second = right.selectbox("right", choices, index=len(choices) - 1, key="compare_right")
    for column, path in ((left, Path(first)), (right, Path(second))):
        history = log_history(path)
        evaluations = history.dropna(subset=["eval_loss"]) if "eval_loss" in history else history.iloc[0:0]
        column.metric("held-out loss", f"{evaluations['eval_loss'].iloc[-1]:.4f}" if not evaluations.empty else "n/a")
        if is_scmt(path):
            _, values = probe_tables("memory", str(path))
            column.metric("write rate", f"{values['write_rate']:.1%}")


def main() -> None:
    st.set_page_config(page_title="SCMT checkpoint browser", layout="wide")
    root_text = st.sidebar.text_input("checkpoint root", value=command_line_root(), key="root")
    root = Path(root_text)
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
            page_compare(runs)
        elif page in ("Schemas", "Entropy", "Memory") and not is_scmt(path):
            st.warning(f"{page} probes need an SCMT checkpoint; {run} is another model.")
        else:
            {"Overview": page_overview, "Schemas": page_schemas, "Entropy": page_entropy, "Memory": page_memory, "Leakage": page_leakage}[page](path)
    except Exception as error:  # noqa: BLE001  (an unloadable checkpoint must not take the app down)
        st.error(f"{path} could not be shown: {error}")


main()
