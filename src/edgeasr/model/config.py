"""train.yaml -> a validated model. Both layouts are read:

- current (2023-12+): `cmvn: global_cmvn` + `cmvn_conf: {cmvn_file, is_json_cmvn}`,
  `tokenizer_conf: {symbol_table_path, special_tokens}`, `ctc_conf`, `model_conf`;
- legacy: top-level `cmvn_file`, `is_json_cmvn`, no tokenizer block (sos = eos = vocab - 1).

Every key that changes numerics is checked; an unsupported value is a one-line error naming the
key and what we support. Keys that only matter for training (dropouts, checkpointing) pass.
"""

from typing import Any, Dict, Optional

from ..checks import is_one_of
from ..errors import EdgeAsrError

# key -> default, check. A check is a tuple of allowed values or a predicate with a description.
Check = Any
_POSITIVE_INT = (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "a positive integer")
_NON_NEGATIVE_INT = (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0")
_BOOL = (True, False)
_FLOAT = (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number")
_RATE = (lambda v: isinstance(v, (int, float)) and 0.0 <= v < 1.0, "a number in [0, 1)")

_COMMON_ENCODER: Dict[str, Any] = {
    "output_size": (256, _POSITIVE_INT),
    "attention_heads": (4, _POSITIVE_INT),
    "linear_units": (2048, _POSITIVE_INT),
    "num_blocks": (6, _POSITIVE_INT),
    "dropout_rate": (0.1, _RATE),
    "positional_dropout_rate": (0.1, _RATE),
    "attention_dropout_rate": (0.0, _RATE),
    "input_layer": ("conv2d", ("conv2d", "conv2d6", "conv2d8")),
    "normalize_before": (True, _BOOL),
    "static_chunk_size": (0, _NON_NEGATIVE_INT),
    "use_dynamic_chunk": (False, _BOOL),
    "use_dynamic_left_chunk": (False, _BOOL),
    "norm_eps": (1e-5, _FLOAT),
    "mlp_type": ("position_wise_feed_forward", ("position_wise_feed_forward", "moe")),
    "mlp_bias": (True, _BOOL),
    "n_expert": (8, _POSITIVE_INT),
    "n_expert_activated": (2, _POSITIVE_INT),
    "query_bias": (True, _BOOL),
    "key_bias": (True, _BOOL),
    "value_bias": (True, _BOOL),
    # Accepted but without effect at inference, or only their default is implemented.
    "gradient_checkpointing": (False, _BOOL),
    "use_sdpa": (False, _BOOL),
    "layer_norm_type": ("layer_norm", ("layer_norm",)),
    "n_kv_head": (None, (None,)),
    "head_dim": (None, (None,)),
    "concat_after": (False, (False,)),
    "final_norm": (True, (True,)),
    "positionwise_conv_kernel_size": (1, (1,)),
}
_ENCODER_SCHEMA = {
    "transformer": {
        **_COMMON_ENCODER,
        "pos_enc_layer_type": ("abs_pos", ("abs_pos", "rel_pos", "no_pos")),
        "selfattention_layer_type": ("selfattn", ("selfattn", "rel_selfattn")),
        "activation_type": ("relu", ("relu", "swish", "gelu")),
    },
    "conformer": {
        **_COMMON_ENCODER,
        "pos_enc_layer_type": ("rel_pos", ("abs_pos", "rel_pos", "no_pos")),
        "selfattention_layer_type": ("rel_selfattn", ("selfattn", "rel_selfattn")),
        "activation_type": ("swish", ("relu", "swish", "gelu")),
        "macaron_style": (True, _BOOL),
        "use_cnn_module": (True, _BOOL),
        "cnn_module_kernel": (15, _POSITIVE_INT),
        "causal": (False, _BOOL),
        "cnn_module_norm": ("batch_norm", ("batch_norm", "layer_norm")),
        "conv_bias": (True, _BOOL),
        "conv_norm_eps": (1e-5, _FLOAT),
        "conv_inner_factor": (2, (2,)),
    },
}
_DECODER_SCHEMA = {
    "attention_heads": (4, _POSITIVE_INT),
    "linear_units": (2048, _POSITIVE_INT),
    "num_blocks": (6, _POSITIVE_INT),
    "r_num_blocks": (0, _NON_NEGATIVE_INT),
    "dropout_rate": (0.1, _RATE),
    "positional_dropout_rate": (0.1, _RATE),
    "self_attention_dropout_rate": (0.0, _RATE),
    "src_attention_dropout_rate": (0.0, _RATE),
    "normalize_before": (True, _BOOL),
    "activation_type": ("relu", ("relu", "swish", "gelu")),
    "norm_eps": (1e-5, _FLOAT),
    "input_layer": ("embed", ("embed",)),
    "use_output_layer": (True, (True,)),
    "src_attention": (True, (True,)),
    "concat_after": (False, (False,)),
    "gradient_checkpointing": (False, _BOOL),
    "use_sdpa": (False, _BOOL),
    "tie_word_embedding": (False, (False,)),
    "layer_norm_type": ("layer_norm", ("layer_norm",)),
    "mlp_type": ("position_wise_feed_forward", ("position_wise_feed_forward",)),
    "query_bias": (True, (True,)),
    "key_bias": (True, (True,)),
    "value_bias": (True, (True,)),
    "n_kv_head": (None, (None,)),
    "head_dim": (None, (None,)),
}


def _describe(check: Check) -> str:
    if isinstance(check, tuple) and len(check) == 2 and callable(check[0]):
        return check[1]
    return " | ".join(repr(v) for v in check)


def _accepts(check: Check, value: Any) -> bool:
    if isinstance(check, tuple) and len(check) == 2 and callable(check[0]):
        return bool(check[0](value))
    return is_one_of(value, check)


def validate_section(section: str, conf: Optional[Dict[str, Any]], schema: Dict[str, Any]) -> Dict[str, Any]:
    """Fill defaults and check every key of `conf` against `schema`; returns the completed dict."""
    conf = dict(conf or {})
    unknown = sorted(set(conf) - set(schema))
    if unknown:
        raise EdgeAsrError(f"{section}.{unknown[0]}: unsupported key (supported: {', '.join(sorted(schema))})")
    out = {}
    for key, (default, check) in schema.items():
        value = conf.get(key, default)
        if not _accepts(check, value):
            raise EdgeAsrError(f"{section}.{key}: unsupported value {value!r} (supported: {_describe(check)})")
        out[key] = value
    return out


def _require_choice(configs: Dict[str, Any], key: str, choices: tuple, default: Any = None) -> Any:
    value = configs.get(key, default)
    if value not in choices:
        supported = ", ".join(repr(c) for c in choices)
        raise EdgeAsrError(f"{key}: unsupported value {value!r} (supported: {supported})")
    return value


class ModelSpec:
    """What train.yaml says about the network, validated: encoder/decoder kwargs, vocab, sos/eos."""

    def __init__(self, configs: Dict[str, Any], vocab_size: int):
        _require_choice(configs, "model", ("asr_model",), "asr_model")
        self.encoder_type = _require_choice(configs, "encoder", ("conformer", "transformer"))
        self.decoder_type = _require_choice(configs, "decoder", ("transformer", "bitransformer", None))
        self.input_dim = configs.get("input_dim", 80)
        output_dim = configs.get("output_dim", vocab_size)
        if output_dim != vocab_size:
            raise EdgeAsrError(f"output_dim: {output_dim} but the symbol table has {vocab_size} units")
        self.vocab_size = vocab_size
        self.encoder_conf = validate_section("encoder_conf", configs.get("encoder_conf"), _ENCODER_SCHEMA[self.encoder_type])
        if self.encoder_conf["mlp_type"] == "moe" and not (
            0 < self.encoder_conf["n_expert_activated"] <= self.encoder_conf["n_expert"]
        ):
            raise EdgeAsrError("encoder_conf.n_expert_activated: must be in 1..n_expert")
        self.decoder_conf = (
            validate_section("decoder_conf", configs.get("decoder_conf"), _DECODER_SCHEMA) if self.decoder_type else None
        )
        if self.decoder_type == "transformer" and self.decoder_conf["r_num_blocks"]:
            raise EdgeAsrError("decoder_conf.r_num_blocks: only used by decoder 'bitransformer'")
        blank = (configs.get("ctc_conf") or {}).get("ctc_blank_id", 0)
        if blank != 0:
            raise EdgeAsrError(f"ctc_conf.ctc_blank_id: unsupported value {blank!r} (supported: 0)")
        model_conf = dict(configs.get("model_conf") or {})
        self.ctc_weight = float(model_conf.get("ctc_weight", 0.5))
        self.reverse_weight = float(model_conf.get("reverse_weight", 0.0))
        self.lsm_weight = float(model_conf.get("lsm_weight", 0.0))
        self.length_normalized_loss = bool(model_conf.get("length_normalized_loss", False))
        specials = (configs.get("tokenizer_conf") or {}).get("special_tokens") or {}
        self.sos = int(specials.get("<sos>", vocab_size - 1))
        self.eos = int(specials.get("<eos>", vocab_size - 1))

    def encoder_kwargs(self) -> Dict[str, Any]:
        drop = {"gradient_checkpointing", "use_sdpa", "layer_norm_type", "n_kv_head", "head_dim", "concat_after",
                "final_norm", "positionwise_conv_kernel_size", "conv_inner_factor"}
        return {k: v for k, v in self.encoder_conf.items() if k not in drop}

    def decoder_kwargs(self) -> Dict[str, Any]:
        keep = {"attention_heads", "linear_units", "num_blocks", "dropout_rate", "positional_dropout_rate",
                "self_attention_dropout_rate", "src_attention_dropout_rate", "normalize_before", "activation_type",
                "norm_eps"}
        kwargs = {k: v for k, v in self.decoder_conf.items() if k in keep}
        if self.decoder_type == "bitransformer":
            kwargs["r_num_blocks"] = self.decoder_conf["r_num_blocks"]
        return kwargs


def cmvn_settings(configs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """{'cmvn_file', 'is_json_cmvn'} when train.yaml asks for global CMVN (either layout), else None."""
    if "cmvn" in configs or "cmvn_conf" in configs:
        kind = configs.get("cmvn")
        if kind is None:
            return None
        if kind != "global_cmvn":
            raise EdgeAsrError(f"cmvn: unsupported value {kind!r} (supported: 'global_cmvn', null)")
        conf = configs.get("cmvn_conf") or {}
        return {"cmvn_file": conf.get("cmvn_file"), "is_json_cmvn": conf.get("is_json_cmvn", True)}
    if configs.get("cmvn_file"):
        return {"cmvn_file": configs["cmvn_file"], "is_json_cmvn": configs.get("is_json_cmvn", True)}
    return None


def symbol_table_setting(configs: Dict[str, Any]) -> Optional[str]:
    return (configs.get("tokenizer_conf") or {}).get("symbol_table_path")
