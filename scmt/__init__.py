"""SCMT: the Schema-Augmented Self-Optimizing Memory Transformer, with hook points.

``SCMTForCausalLM`` in legacy mode reproduces the published v0.1.2 code; in
strict mode it is exactly causal. Both register with the ``transformers`` Auto
classes under the model type ``"scmt"``.
"""

from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from .configuration_scmt import CAUSAL_SWITCHES, SCMTConfig
from .hooks import ActivationCache, HookPoint, HookPointError, hook_points, patch, trace
from .memory import MemoryEvents, SCMTMemory
from .modeling_scmt import SCMTCausalLMOutput, SCMTForCausalLM, SCMTState
from .tokenization import SelfiesNgramTokenizer

AutoConfig.register("scmt", SCMTConfig, exist_ok=True)
AutoModelForCausalLM.register(SCMTConfig, SCMTForCausalLM, exist_ok=True)
# Registered by class name, so a tokenizer_config.json naming it resolves through AutoTokenizer.
AutoTokenizer.register(SCMTConfig, tokenizer_class=SelfiesNgramTokenizer, exist_ok=True)

__version__ = "0.1.0"

__all__ = [
    "ActivationCache",
    "CAUSAL_SWITCHES",
    "HookPoint",
    "HookPointError",
    "MemoryEvents",
    "SCMTCausalLMOutput",
    "SCMTConfig",
    "SCMTForCausalLM",
    "SCMTMemory",
    "SCMTState",
    "SelfiesNgramTokenizer",
    "hook_points",
    "patch",
    "trace",
]
