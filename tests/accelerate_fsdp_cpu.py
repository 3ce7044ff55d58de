"""`persona-diff` entry point that lets accelerate's FSDP path run on CPU (tests only).

accelerate 1.x enables FSDP only for GPU-like distributed types: on a CPU machine the state
becomes MULTI_CPU and the FSDP plugin from the config is dropped, so every process silently
holds the whole model. torch's FSDP2 (`fully_shard`) itself runs on CPU with gloo, so this
script re-labels the state as FSDP right after accelerate builds it; everything after that
(accelerate's FSDP2 `prepare`, state-dict gathering, our checkpoint and resume code) is the
real code path. Run as
``accelerate launch --config_file FSDP_CPU.yaml tests/accelerate_fsdp_cpu.py finetune ...``.
"""

from __future__ import annotations

import sys

import accelerate.state as state
from accelerate.utils import DistributedType

_init = state.AcceleratorState.__init__


def _init_fsdp_on_cpu(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    if kwargs.get("fsdp_plugin") is not None and self.distributed_type == DistributedType.MULTI_CPU:
        state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = kwargs["fsdp_plugin"]


state.AcceleratorState.__init__ = _init_fsdp_on_cpu

if __name__ == "__main__":
    from persona_diff.cli import main

    main(sys.argv[1:])
