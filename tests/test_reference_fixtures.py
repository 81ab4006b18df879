"""Legacy mode reproduces the golden outputs of the published SCMT v0.1.2 code within 1e-4."""

from __future__ import annotations

import pytest
import torch

from scmt import SCMTConfig, SCMTForCausalLM, SCMTMemory, trace
from scmt.legacy import SchemaAugmentedSOMT

from .conftest import reference_fixture

TOLERANCE = 1e-4
FIXTURES = ["tiny_roomy", "tiny_prune"]
TENSOR_FIELDS = ["logits", "memory_keys", "memory_vals", "memory_age", "memory_timestamps", "entropy_norm", "dynamic_threshold"]
SCALAR_FIELDS = ["importance_entropy", "importance_l2", "schema_utility"]


def load_fixture_model(fixture: dict) -> SCMTForCausalLM:
    model = SCMTForCausalLM(SCMTConfig.from_reference_dict(fixture["config"]))
    model.load_state_dict(fixture["state_dict"])
    model.tie_weights()
    return model.eval()


def run_calls(model: SCMTForCausalLM, calls: list[dict]) -> list[dict]:
    """Run the fixture's calls in order, carrying memory as the fixture says; collect outputs."""
    results = []
    memory = None
    for call in calls:
        carried = memory if call["memory_in"] else None
        with torch.no_grad():
            out = model(call["input_ids"], memory=carried, position_offset=call["offset"], step_mode=call["step_mode"])
        memory = out.memory
        results.append(
            {
                "logits": out.logits,
                "memory_keys": out.memory.keys,
                "memory_vals": out.memory.values,
                "memory_age": out.memory.ages,
                "memory_timestamps": out.memory.timestamps,
                "entropy_norm": out.entropy_norm,
                "dynamic_threshold": out.dynamic_threshold,
                **{name: float(out.aux_losses[name]) for name in SCALAR_FIELDS},
                "schema_utility_sum": model.schema_utility_sum.clone(),
                "schema_usage_count": model.schema_usage_count.clone(),
            }
        )
    return results


@pytest.mark.parametrize("name", FIXTURES)
def test_every_call_matches_golden(name):
    fixture = reference_fixture(name)
    results = run_calls(load_fixture_model(fixture), fixture["calls"])
    for index, (call, result) in enumerate(zip(fixture["calls"], results)):
        expected = call["expected"]
        for field in TENSOR_FIELDS + ["schema_utility_sum", "schema_usage_count"]:
            got, want = result[field], expected[field]
            assert got.shape == want.shape, f"{name} call {index} {field} shape"
            diff = (got.double() - want.double()).abs().max().item()
            assert diff <= TOLERANCE, f"{name} call {index} {field} differs by {diff}"
        for field in SCALAR_FIELDS:
            assert result[field] == pytest.approx(expected[field], abs=TOLERANCE), f"{name} call {index} {field}"


@pytest.mark.parametrize("name", FIXTURES)
def test_timestamps_match_exactly(name):
    fixture = reference_fixture(name)
    results = run_calls(load_fixture_model(fixture), fixture["calls"])
    for index, (call, result) in enumerate(zip(fixture["calls"], results)):
        assert torch.equal(result["memory_timestamps"], call["expected"]["memory_timestamps"]), f"call {index}"


def test_prune_fixture_evicts():
    fixture = reference_fixture("tiny_prune")
    model = load_fixture_model(fixture)
    with trace(model, ["hook_memory_events"]) as cache:
        run_calls(model, fixture["calls"])
    evictions = sum(events.num_evictions for events in cache.history("hook_memory_events"))
    # The golden comparison only covers pruning if the published code pruned here.
    assert evictions > 0


@pytest.mark.parametrize("name", FIXTURES)
def test_trainer_gradients_match_golden(name):
    fixture = reference_fixture(name)
    model = load_fixture_model(fixture)
    input_ids = fixture["calls"][0]["input_ids"]
    out = model(input_ids, labels=input_ids)
    out.loss.backward()

    golden = fixture["gradient"]
    assert out.lm_loss.item() == pytest.approx(golden["lm_loss"], abs=TOLERANCE)
    assert out.loss.item() == pytest.approx(golden["total_loss"], abs=TOLERANCE)
    norms = {n: p.grad.norm().item() for n, p in model.named_parameters() if p.grad is not None}
    assert set(norms) == set(golden["grad_norms"])
    for parameter, want in golden["grad_norms"].items():
        assert norms[parameter] == pytest.approx(want, abs=TOLERANCE), parameter


@pytest.mark.parametrize("name", FIXTURES)
def test_published_class_returns_five_tuple(name):
    fixture = reference_fixture(name)
    wrapper = SchemaAugmentedSOMT(fixture["config"])
    wrapper.load_state_dict(fixture["state_dict"])
    wrapper.eval()
    keys = vals = ages = None
    for index, call in enumerate(fixture["calls"]):
        if not call["memory_in"]:
            keys = vals = ages = None
        with torch.no_grad():
            logits, keys, vals, ages, aux = wrapper(
                call["input_ids"], keys, vals, ages, step_mode=call["step_mode"], global_pos_offset=call["offset"]
            )
        expected = call["expected"]
        assert (logits - expected["logits"]).abs().max() <= TOLERANCE, f"call {index} logits"
        assert (keys - expected["memory_keys"]).abs().max() <= TOLERANCE, f"call {index} keys"
        assert torch.equal(ages, expected["memory_age"]), f"call {index} ages"
        assert torch.equal(aux["memory_timestamps"], expected["memory_timestamps"]), f"call {index} timestamps"
        assert set(aux) >= {"importance_entropy", "importance_l2", "schema_utility", "entropy_norm", "dynamic_threshold"}


def test_published_state_dict_names_round_trip():
    fixture = reference_fixture("tiny_roomy")
    wrapper = SchemaAugmentedSOMT(fixture["config"])
    assert set(wrapper.state_dict()) == set(fixture["state_dict"])


def test_fixture_memory_format_loads_as_scmt_memory():
    fixture = reference_fixture("tiny_prune")
    expected = fixture["calls"][0]["expected"]
    memory = SCMTMemory.from_legacy(expected["memory_keys"], expected["memory_vals"], expected["memory_age"], position_offset=20)
    assert torch.equal(memory.occupied, expected["memory_timestamps"] < 10**9)
    assert torch.equal(memory.timestamps, expected["memory_timestamps"])
