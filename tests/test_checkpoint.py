"""Saving and loading in both layouts; bad checkpoints and bad inputs get clear errors."""

from __future__ import annotations

import json
import os

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from scmt import SCMTConfig, SCMTForCausalLM, SCMTMemory
from scmt.checkpoint import CheckpointError, load_checkpoint, save_reference_checkpoint
from scmt.legacy import SchemaAugmentedSOMT

from .conftest import make_model, reference_fixture

SMALL = dict(vocab_size=60, d_model=32, nhead=4, num_layers=2, mem_size=8, num_schemas=4, max_len=32)


def small_model(mode="strict"):
    return make_model(mode, seed=1, **SMALL)


def input_batch():
    return torch.randint(5, 60, (2, 20), generator=torch.Generator().manual_seed(0))


def test_hf_layout_round_trip_is_bit_identical(tmp_path):
    model = small_model()
    model.save_pretrained(tmp_path)
    saved = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with torch.no_grad():
        expected = model(input_batch()).logits
    assert (tmp_path / "model.safetensors").is_file()
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "scmt"

    for loaded in (SCMTForCausalLM.from_pretrained(tmp_path), AutoModelForCausalLM.from_pretrained(tmp_path), load_checkpoint(tmp_path)):
        loaded.eval()
        assert isinstance(loaded, SCMTForCausalLM)
        for name, tensor in saved.items():
            assert torch.equal(loaded.state_dict()[name], tensor), name
        assert loaded.lm_head.weight.data_ptr() == loaded.embed.weight.data_ptr()
        with torch.no_grad():
            assert torch.equal(loaded(input_batch()).logits, expected)


def test_auto_config_knows_scmt():
    config = AutoConfig.for_model("scmt", d_model=64, nhead=4)
    assert isinstance(config, SCMTConfig)


def test_strict_switches_survive_save(tmp_path):
    small_model("strict").save_pretrained(tmp_path)
    assert load_checkpoint(tmp_path).config.causal_mode == "strict"
    assert load_checkpoint(tmp_path, mode="legacy").config.causal_mode == "legacy"


def test_reference_fixture_weights_load_from_reference_layout(tmp_path):
    fixture = reference_fixture("tiny_prune")
    (tmp_path / "config.json").write_text(json.dumps(fixture["config"]))
    torch.save(fixture["state_dict"], tmp_path / "pytorch_model.bin")
    model = load_checkpoint(tmp_path)
    assert model.config.causal_mode == "legacy"
    call = fixture["calls"][0]
    with torch.no_grad():
        logits = model(call["input_ids"]).logits
    assert (logits - call["expected"]["logits"]).abs().max() <= 1e-4


def test_reference_layout_round_trip(tmp_path):
    model = small_model("legacy")
    save_reference_checkpoint(model, tmp_path / "ref")
    assert set(json.loads((tmp_path / "ref" / "config.json").read_text())) == set(SCMTConfig().to_reference_dict())
    wrapper = SchemaAugmentedSOMT.from_pretrained(tmp_path / "ref")
    with torch.no_grad():
        assert torch.equal(wrapper(input_batch())[0], model(input_batch()).logits)
    with pytest.raises(FileExistsError):
        save_reference_checkpoint(model, tmp_path / "ref")


def test_reference_checkpoint_saved_as_hf_loads_back(tmp_path):
    model = small_model("legacy")
    save_reference_checkpoint(model, tmp_path / "ref")
    load_checkpoint(tmp_path / "ref").save_pretrained(tmp_path / "hf")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        assert torch.equal(reloaded(input_batch()).logits, model(input_batch()).logits)


# --- bad checkpoints -------------------------------------------------------------


def reference_dir(tmp_path):
    directory = tmp_path / "ref"
    save_reference_checkpoint(small_model("legacy"), directory)
    return directory


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope")


def test_missing_config(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        load_checkpoint(tmp_path)


def test_corrupt_config(tmp_path):
    directory = reference_dir(tmp_path)
    (directory / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(directory)


def test_missing_weights(tmp_path):
    directory = reference_dir(tmp_path)
    os.remove(directory / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pytorch_model.bin not found"):
        load_checkpoint(directory)


def test_corrupt_weights(tmp_path):
    directory = reference_dir(tmp_path)
    (directory / "pytorch_model.bin").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="not a readable torch file"):
        load_checkpoint(directory)


class Payload:
    """Unpickling this would run arbitrary code."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_needing_code_is_rejected(tmp_path):
    directory = reference_dir(tmp_path)
    torch.save({"embed.weight": torch.zeros(1), "payload": Payload()}, directory / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="arbitrary code") as raised:
        load_checkpoint(directory)
    # The message must not invite the user to allow-list the code.
    assert "add_safe_globals" not in str(raised.value)


def test_config_not_matching_weights(tmp_path):
    directory = reference_dir(tmp_path)
    config = json.loads((directory / "config.json").read_text())
    config["d_model"] = 64
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(directory)


def test_hf_config_not_matching_weights(tmp_path):
    small_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["num_schemas"] = 9
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="schema"):
        load_checkpoint(tmp_path)


def test_corrupt_safetensors(tmp_path):
    small_model().save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"broken")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(tmp_path)


# --- bad forward inputs ----------------------------------------------------------


@pytest.mark.parametrize(
    "input_ids,message",
    [
        (torch.tensor([[5, 60]]), "token id 60 is outside the vocabulary"),
        (torch.tensor([[5, -1]]), "token id -1 is outside the vocabulary"),
        (torch.zeros(1, 33, dtype=torch.long), "exceeds max_len=32"),
        (torch.zeros(1, 0, dtype=torch.long), "empty input"),
        (torch.zeros(5, dtype=torch.long), "2-D"),
        (torch.zeros(1, 5), "integer token ids"),
    ],
)
def test_bad_input_ids(input_ids, message):
    with pytest.raises(ValueError, match=message):
        small_model()(input_ids)


def test_memory_of_wrong_batch():
    model = small_model()
    with torch.no_grad():
        memory = model(input_batch()).memory
    with pytest.raises(ValueError, match=r"memory.keys has shape \(2, 8, 32\)"):
        model(input_batch()[:1], memory=memory)


def test_memory_of_wrong_size():
    model = small_model()
    memory = SCMTMemory.empty(2, 5, 32)
    with pytest.raises(ValueError, match="mem_size"):
        model(input_batch(), memory=memory)


def test_padding_attention_mask_is_rejected():
    with pytest.raises(ValueError, match="attention_mask"):
        small_model()(input_batch(), attention_mask=torch.zeros(2, 20))


def test_invalid_mode():
    with pytest.raises(ValueError, match="invalid mode 'fast'"):
        SCMTConfig(mode="fast")


def test_heads_must_divide_width():
    with pytest.raises(ValueError, match="multiple of nhead"):
        SCMTConfig(d_model=30, nhead=4)


def test_labels_of_wrong_shape():
    with pytest.raises(ValueError, match=r"labels has shape \(1, 20\)"):
        small_model()(input_batch(), labels=input_batch()[:1])


def test_labels_outside_vocabulary():
    labels = input_batch().clone()
    labels[0, 3] = 99
    with pytest.raises(ValueError, match="label 99 is outside the vocabulary"):
        small_model()(input_batch(), labels=labels)


def test_invalid_mode_override_names_argument(tmp_path):
    small_model().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="invalid mode 'strcit'"):
        load_checkpoint(tmp_path, mode="strcit")
