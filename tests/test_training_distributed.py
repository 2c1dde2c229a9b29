"""vggnets.training.distributed: unwrapping compiled models, and one process outside torchrun."""

from __future__ import annotations

import torch

import vggnets
import vggnets.training as T


def _tiny(seed: int = 0, name: str = "vgg11_bn") -> torch.nn.Module:
    torch.manual_seed(seed)
    return vggnets.build(name, width=0.125, num_classes=10)


def test_unwrap_compiled_model_gives_plain_keys() -> None:
    model = _tiny(0, "vgg11")
    compiled = torch.compile(model)  # nothing is compiled before the first call
    assert all(k.startswith("_orig_mod.") for k in compiled.state_dict())
    assert T.unwrap(compiled) is model and T.unwrap(model) is model


def test_one_process_outside_torchrun(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with T.distributed_process(torch.device("cpu")) as (dist, device):
        assert dist == T.Distributed() and dist.is_main and device == torch.device("cpu")
        assert not T.is_distributed() and T.current_process() == T.Distributed()
        assert T.sum_over_processes([1.0, 2.0], device) == [1.0, 2.0]
        assert T.gather_over_processes({"a": 1}) == [{"a": 1}]
        model = _tiny(0, "vgg11")
        assert T.wrap_model(model, device, dist) is model  # no process group: no DistributedDataParallel
        compiled = T.wrap_model(model, device, dist, compile=True)
        assert compiled is not model and T.unwrap(compiled) is model
