"""Hook points: every internal step observable and replaceable by standard forward hooks."""

from __future__ import annotations

import pytest
import torch

from scmt import MemoryEvents, hook_points, patch, trace

from .conftest import make_model

EXPECTED_POINTS = [
    "hook_embed",
    "encoder.hook_layer_out.0",
    "encoder.hook_layer_out.1",
    "hook_encoder_out",
    "hook_base_logits",
    "hook_entropy",
    "hook_entropy_norm",
    "hook_uncertainty_gate",
    "hook_query",
    "hook_threshold",
    "hook_write",
    "hook_memory_events",
    "hook_read_mask",
    "hook_read_weights",
    "hook_instance_context",
    "hook_schema_weights",
    "hook_schema_context",
    "hook_fused_context",
    "hook_logits",
]


def small_model(mode="strict", **overrides):
    values = dict(vocab_size=60, d_model=32, nhead=4, num_layers=2, mem_size=8, num_schemas=4)
    values.update(overrides)
    return make_model(mode, seed=0, **values)


def batch(length=20, rows=2, seed=0):
    return torch.randint(5, 60, (rows, length), generator=torch.Generator().manual_seed(seed))


def test_all_points_exist():
    names = list(hook_points(small_model()))
    for name in EXPECTED_POINTS:
        assert name in names


@pytest.mark.parametrize("mode", ["legacy", "strict"])
def test_trace_records_shapes(mode):
    model = small_model(mode)
    input_ids = batch()
    with torch.no_grad(), trace(model) as cache:
        out = model(input_ids)
    assert set(EXPECTED_POINTS) <= set(cache.keys())
    assert cache["hook_embed"].shape == (2, 20, 32)
    assert cache["hook_entropy"].shape == (2, 20)
    assert cache["hook_schema_weights"].shape == (2, 20, 4)
    assert cache["hook_write"].dtype == torch.bool
    assert torch.equal(cache["hook_logits"], out.logits)
    assert isinstance(cache["hook_memory_events"], MemoryEvents)
    slots = 8 if mode == "legacy" else 20
    assert cache["hook_read_weights"].shape == (2, 20, slots)
    assert cache["hook_read_mask"].shape == (2, 20, slots)


def test_trace_selected_points_only():
    model = small_model()
    with torch.no_grad(), trace(model, ["hook_entropy_norm"]) as cache:
        model(batch())
        model(batch(seed=1))
    assert cache.keys() == ["hook_entropy_norm"]
    assert len(cache.history("hook_entropy_norm")) == 2
    with pytest.raises(KeyError, match="recorded nothing"):
        cache["hook_logits"]


def test_unknown_point_is_named():
    with pytest.raises(KeyError, match="hook_nope"):
        with trace(small_model(), ["hook_nope"]):
            pass


def test_layer_modules_take_standard_hooks():
    model = small_model()
    seen = []
    handle = model.encoder.layers[1].register_forward_hook(lambda m, a, o: seen.append(o.shape))
    with torch.no_grad():
        model(batch())
    handle.remove()
    assert seen == [torch.Size([2, 20, 32])]


def test_patch_write_off_empties_memory():
    model = small_model()
    with torch.no_grad(), patch(model, {"hook_write": lambda write, name: torch.zeros_like(write)}):
        out = model(batch())
    assert not out.memory.occupied.any()
    assert not out.write_mask.any()


def test_patch_changes_downstream_logits():
    model = small_model()
    input_ids = batch()
    with torch.no_grad():
        clean = model(input_ids).logits
        with patch(model, {"hook_schema_context": lambda value, name: value * 0}):
            patched = model(input_ids).logits
    assert (patched - clean).abs().max() > 1e-4


def test_patch_with_tensor_of_wrong_shape_is_rejected():
    model = small_model()
    with pytest.raises(ValueError, match="shape"):
        with torch.no_grad(), patch(model, {"hook_entropy_norm": torch.zeros(3, 3)}):
            model(batch())


def test_patching_clean_entropy_restores_writes():
    # The clean run's normalised entropy, patched into a run with a changed suffix,
    # restores the legacy model's earlier write decisions.
    model = small_model("legacy", mem_size=64)
    clean_ids = batch(length=24, rows=1, seed=3)
    perturbed = clean_ids.clone()
    perturbed[:, 12:] = torch.randint(5, 60, (1, 12), generator=torch.Generator().manual_seed(9))
    with torch.no_grad(), trace(model, ["hook_entropy_norm"]) as cache:
        model(clean_ids)
    clean_norm = cache["hook_entropy_norm"]

    def keep_past(value, name):
        value = value.clone()
        value[:, :12] = clean_norm[:, :12]
        return value

    with torch.no_grad():
        clean_write = model(clean_ids).write_mask
        leaked_write = model(perturbed).write_mask
        with patch(model, {"hook_entropy_norm": keep_past}):
            patched_write = model(perturbed).write_mask
    assert torch.equal(patched_write[:, :12], clean_write[:, :12])
    assert leaked_write.shape == clean_write.shape


def test_trace_keeps_graph_when_asked():
    model = small_model()
    with trace(model, ["hook_query"], detach=False) as cache:
        model(batch())
    assert cache["hook_query"].requires_grad
