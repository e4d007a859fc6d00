"""What the X3 rewrite supports, checked before anything is built.

The Horizon X3 BPU (march bernoulli2) runs static 4-D NCHW graphs; the board runtime feeds an
encoder exactly four inputs (`chunk`, `att_cache`, `cnn_cache`, `att_mask`) and nothing else. A
model can be rewritten *exactly* into that form when:

- encoder: `conformer` or `transformer` (WeNet's exporter: conformer only);
- input_layer: `conv2d`, `conv2d6` or `conv2d8` (WeNet's: conv2d8 only); every subsampling conv
  kernel is <= 7 already, the final projection is split into (k, 1) kernels with k <= 7;
- pos_enc_layer_type: `no_pos`. abs_pos / rel_pos encodings depend on the chunk offset, which the
  board runtime does not feed, so they cannot be part of a graph with static inputs;
- selfattention_layer_type: `selfattn`, or `rel_selfattn` (with no_pos its position term is zero
  and pos_bias_u folds into the query bias: exact). WeNet's: selfattn only;
- activation_type: relu, swish or gelu (gelu's Erf runs on the CPU; the placement report says so);
- conformer conv module: causal (the streaming cache holds K-1 past frames), kernel <= 7 (the X3
  conv kernel limit), batch_norm or layer_norm (WeNet's: causal batch_norm only); or no conv module;
- macaron or not, pre- or post-norm (WeNet's: macaron, pre-norm only);
- FFN or MoE (`mlp_type: moe`), MoE in its exact dense form: routing has data-dependent shapes;
- any FFN width and vocabulary: 1x1 convs are split at 2048 channels (the X3 per-conv limit);
- output_size <= 2048 (one conv's channel limit on the residual stream, not split);
- streaming geometry: chunk_size > 0 and num_decoding_left_chunks > 0 (a static cache).

The attention decoder is not exported for the BPU (the board runtime decodes with CTC only).
"""

from dataclasses import dataclass
from typing import List

from ..errors import EdgeAsrError
from ..model.asr_model import ASRModel
from ..model.attention import MultiHeadedAttention, RelPositionMultiHeadedAttention
from ..model.embedding import POS_ENC_CLASSES, NoPositionalEncoding
from ..model.encoder_layer import ConformerEncoderLayer

MAX_KERNEL = 7  # X3 Conv: kernel H x W in [1, 7] x [1, 7]
MAX_CHANNELS = 2048  # X3 Conv: input/output channels of one group <= 2048
SUPPORTED_ACTIVATIONS = ("ReLU", "SiLU", "GELU")


@dataclass(frozen=True)
class Violation:
    key: str
    value: object
    fix: str

    def __str__(self) -> str:
        return f"{self.key}={self.value!r}: {self.fix}"


def contract_violations(model: ASRModel, chunk_size: int, num_left_chunks: int) -> List[Violation]:
    """Every way `model` at this geometry falls outside what the rewrite supports (empty = fine)."""
    enc = model.encoder
    found: List[Violation] = []
    if chunk_size <= 0:
        found.append(Violation("streaming.chunk_size", chunk_size, "the BPU graph needs a fixed chunk > 0"))
    if num_left_chunks <= 0:
        found.append(Violation("streaming.num_decoding_left_chunks", num_left_chunks,
                               "the BPU graph needs a static cache: use a value > 0"))
    if not isinstance(enc.embed.pos_enc, NoPositionalEncoding):
        kind = {v: k for k, v in POS_ENC_CLASSES.items()}.get(type(enc.embed.pos_enc), type(enc.embed.pos_enc).__name__)
        found.append(Violation("encoder_conf.pos_enc_layer_type", kind,
                               "use no_pos: positions depend on the chunk offset, which the X3 runtime does not feed"))
    if enc.output_size() > MAX_CHANNELS:
        found.append(Violation("encoder_conf.output_size", enc.output_size(),
                               f"at most {MAX_CHANNELS} channels per X3 conv"))
    first = enc.encoders[0]
    attention = first.self_attn
    if type(attention) not in (MultiHeadedAttention, RelPositionMultiHeadedAttention):
        found.append(Violation("encoder_conf.selfattention_layer_type", type(attention).__name__,
                               "use selfattn or rel_selfattn"))
    activation = type(getattr(first.feed_forward, "activation", None) or first.feed_forward.experts[0].activation)
    if activation.__name__ not in SUPPORTED_ACTIVATIONS:
        found.append(Violation("encoder_conf.activation_type", activation.__name__, "use relu, swish or gelu"))
    if isinstance(first, ConformerEncoderLayer) and first.conv_module is not None:
        conv = first.conv_module
        kernel = conv.depthwise_conv.kernel_size[0]
        if conv.lorder == 0:
            found.append(Violation("encoder_conf.causal", False,
                                   "use causal: true (the BPU conv cache holds the K-1 frames before a chunk)"))
        if kernel > MAX_KERNEL:
            found.append(Violation("encoder_conf.cnn_module_kernel", kernel,
                                   f"at most {MAX_KERNEL} (X3 conv kernel limit)"))
    return found


def check_contract(model: ASRModel, chunk_size: int, num_left_chunks: int) -> None:
    """Raise one EdgeAsrError that lists every violation."""
    found = contract_violations(model, chunk_size, num_left_chunks)
    if found:
        raise EdgeAsrError("model outside the X3 BPU contract (see edgeasr/bpu/contract.py): "
                           + "; ".join(str(v) for v in found))
