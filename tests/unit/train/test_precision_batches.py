import pytest
import torch

from shoestring.errors import ShoestringError
from shoestring.train.batches import TensorBatches
from shoestring.train.distributed import torchrun_argv
from shoestring.train.precision import Precision, resolve_precision
from shoestring.types import TensorDataset

AMD_EPYC = "flags\t\t: fpu avx512f avx512_bf16 avx512_vnni"


def test_auto_precision():
    cpu = torch.device("cpu")
    # Native bf16 dot products (AVX512_BF16 or AMX): bf16 matmuls for the GPT ...
    assert resolve_precision("auto", cpu, AMD_EPYC) == "bf16"
    assert resolve_precision("auto", cpu, "flags : amx_bf16 amx_tile") == "bf16"
    # ... but not for families measured no faster, nor under activation checkpointing,
    assert resolve_precision("auto", cpu, AMD_EPYC, family="mlp") == "fp32"
    assert resolve_precision("auto", cpu, AMD_EPYC, checkpointing=True) == "fp32"
    # nor on AVX2-only CPUs, where oneDNN emulates bf16.
    assert resolve_precision("auto", cpu, "flags\t\t: fpu avx2 fma") == "fp32"
    # ATEN_CPU_CAPABILITY=avx2 makes an AVX-512 machine choose as an AVX2 one would.
    assert resolve_precision("auto", cpu, AMD_EPYC, capability="AVX2") == "fp32"
    assert resolve_precision("fp32", cpu, AMD_EPYC) == "fp32"
    assert resolve_precision("auto", torch.device("cuda", 0), cuda_bf16=True) == "bf16"
    assert resolve_precision("auto", torch.device("cuda", 0), cuda_bf16=False) == "fp16"
    assert resolve_precision("bf16", cpu, AMD_EPYC) == "bf16"
    with pytest.raises(ShoestringError, match="fp16 training needs a CUDA"):
        resolve_precision("fp16", cpu)
    assert Precision("fp32", "cpu").scaler() is None and Precision("bf16", "cpu").dtype == \
        torch.bfloat16


def test_rank_slices_rebuild_the_global_batch():
    data = TensorDataset(torch.arange(20.0)[:, None], torch.arange(20))
    whole = TensorBatches(data, 4, seed=3)
    ranks = [TensorBatches(data, 4, seed=3, rank=r, world=2) for r in range(2)]
    for step in range(5):
        x, _ = whole.batch(0, step, step)
        parts = torch.cat([r.batch(0, step, step)[0] for r in ranks])
        assert torch.equal(x, parts)
    with pytest.raises(ShoestringError, match="does not split evenly"):
        TensorBatches(data, 6, seed=0, rank=0, world=4)


def test_torchrun_command_drops_launcher_flags():
    cmd = torchrun_argv(["cfg.toml", "--nproc", "2", "--max-restarts=3", "--out", "o"], 2, "1",
                        None, 3)
    assert cmd[1:3] == ["-m", "torch.distributed.run"]
    assert "--nproc-per-node=2" in cmd and "--max-restarts=3" in cmd and "--standalone" in cmd
    assert cmd[-5:] == ["shoestring", "train", "cfg.toml", "--out", "o"]
    multi = torchrun_argv([], 8, "2", "node0.example:29500", 0)
    assert "--rdzv-endpoint=node0.example:29500" in multi and "--nnodes=2" in multi
