"""A deliberately INT8-fragile copy of a model: one FFN hidden channel scaled up, its way out scaled down.

    python -m edgeasr.demo.fragile models/demo exp/fragile_demo [--blocks 0 1 2] [--modules feed_forward]
        [--channel 3] [--scale 1000]
    dvc exp run -S model=wenet -S model.dir=exp/fragile_demo -S npu=x3_rk3588 \
        -S bpu.max_cer_delta=0.3 -S rknn.max_cer_delta=0.3

ReLU is positively homogeneous (relu(s x) = s relu(x) for s > 0), so with a ReLU FFN the float
function is unchanged up to float rounding, while the hidden activation now has one channel `scale`
times larger than the rest: per-tensor INT8 of that activation keeps only a few levels for every
other channel (the classic outlier-channel failure of LLM and speech INT8). A budget search should
find those blocks' feed_forward groups by name. (On the demo one such block, scale 1000, left CER
unharmed in the RK3588 simulator although that FFN's output cosine fell to -0.15: the residual
path carries the block; hence three blocks by default.) The copy keeps the source's train.yaml, units.txt and
global_cmvn (and provenance.json: the weights' training); final.pt is written with the scaled weights
and fragile.json says what was changed.
"""

import argparse
import json
import shutil
from pathlib import Path
from typing import List, Optional, Sequence

import torch

from ..cli import run_stage
from ..errors import EdgeAsrError
from ..model import load_model
from ..model.asr_model import ASRModel


MODULES = ("feed_forward", "feed_forward_macaron")  # a conformer block's FFNs


def with_outlier_channel(model: ASRModel, block: int, channel: int, scale: float, module: str = "feed_forward"
                         ) -> None:
    """Scale hidden channel `channel` of encoder block `block`'s FFN `module` by `scale` on its way in
    and by 1 / scale on its way out (in place). Refused for an FFN whose activation is not ReLU."""
    blocks = model.encoder.encoders
    if not 0 <= block < len(blocks):
        raise EdgeAsrError(f"--blocks {block}: the encoder has blocks 0..{len(blocks) - 1}")
    ffn = getattr(blocks[block], module, None)
    if ffn is None or not hasattr(ffn, "w_1") or not isinstance(ffn.activation, torch.nn.ReLU):
        raise EdgeAsrError(f"encoders.{block}.{module}: a dense ReLU FFN is needed (the scaling is exact only "
                           f"for ReLU), got {type(ffn).__name__}")
    if not 0 <= channel < ffn.w_1.out_features or scale <= 0:
        raise EdgeAsrError(f"--channel {channel} --scale {scale}: channel in 0..{ffn.w_1.out_features - 1}, scale > 0")
    with torch.no_grad():
        ffn.w_1.weight[channel] *= scale
        ffn.w_1.bias[channel] *= scale
        ffn.w_2.weight[:, channel] /= scale


def write_fragile(source: Path, out: Path, blocks: Sequence[int], modules: Sequence[str], channel: int,
                  scale: float) -> Path:
    """The source model directory copied to `out` with the outlier channel in `modules` of `blocks`."""
    model, _, _ = load_model(source)
    for block in blocks:
        for module in modules:
            with_outlier_channel(model, block, channel, scale, module)
    if out.exists():
        raise EdgeAsrError(f"{out}: exists; give a new directory")
    shutil.copytree(source, out, ignore=shutil.ignore_patterns("final.pt", "*.pt"))
    torch.save(model.state_dict(), out / "final.pt")
    edit = {"source": str(source), "edit": f"hidden channel {channel} of encoders.{{{','.join(map(str, blocks))}}}"
            f".{{{','.join(modules)}}} x {scale} in, / {scale} out (the float function unchanged; INT8-fragile)"}
    (out / "fragile.json").write_text(json.dumps(edit, indent=2) + "\n", encoding="utf-8")
    return out


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--blocks", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--modules", nargs="+", choices=MODULES, default=["feed_forward"])
    parser.add_argument("--channel", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1000.0)
    args = parser.parse_args(argv)
    print(write_fragile(args.source, args.out, args.blocks, args.modules, args.channel, args.scale))


if __name__ == "__main__":
    run_stage(main)
