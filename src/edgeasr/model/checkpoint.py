"""`load_model(model_dir)`: a WeNet model directory -> (model in eval mode, config, symbol table).

A released WeNet model directory holds `train.yaml`, `final.pt` (a plain state_dict), `units.txt`
and usually `global_cmvn`. Paths written in train.yaml point into the training recipe, so files
beside the model win; then the configured path; CMVN falls back to the checkpoint's own
`encoder.global_cmvn.{mean,istd}`. Where both a file and the checkpoint hold CMVN, the
checkpoint's values are used (WeNet loads the state_dict last) and the file must agree.
"""

import logging
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional, Tuple

import numpy as np
import torch
import yaml

from ..errors import EdgeAsrError
from ..frontend.cmvn import load_cmvn
from ..frontend.datalist import read_symbol_table
from .asr_model import ASRModel
from .config import ModelSpec, cmvn_settings, symbol_table_setting
from .ctc import CTC
from .decoder import BiTransformerDecoder, TransformerDecoder
from .embedding import PositionalEncoding
from .encoder import ConformerEncoder, GlobalCMVN, TransformerEncoder

log = logging.getLogger(__name__)

_CMVN_KEYS = ("encoder.global_cmvn.mean", "encoder.global_cmvn.istd")
# A saved sinusoid table must equal the one the model computes; float32 sin/cos of the same
# arguments may differ by an ulp across CPUs and libms, never by more.
_POSITION_TABLE_ATOL = 1e-5


class LoadedModel(NamedTuple):
    model: ASRModel
    config: Dict[str, Any]
    symbol_table: Dict[str, int]


def build_model(spec: ModelSpec, cmvn: Optional[Tuple[np.ndarray, np.ndarray]]) -> ASRModel:
    """A randomly initialised ASRModel from a validated spec (CMVN buffers from `cmvn` if given)."""
    global_cmvn = None
    if cmvn is not None:
        global_cmvn = GlobalCMVN(torch.from_numpy(cmvn[0]).float(), torch.from_numpy(cmvn[1]).float())
    encoder_cls = ConformerEncoder if spec.encoder_type == "conformer" else TransformerEncoder
    encoder = encoder_cls(spec.input_dim, global_cmvn=global_cmvn, **spec.encoder_kwargs())
    decoder = None
    if spec.decoder_type == "transformer":
        decoder = TransformerDecoder(spec.vocab_size, encoder.output_size(), **spec.decoder_kwargs())
    elif spec.decoder_type == "bitransformer":
        decoder = BiTransformerDecoder(spec.vocab_size, encoder.output_size(), **spec.decoder_kwargs())
    ctc = CTC(spec.vocab_size, encoder.output_size())
    return ASRModel(
        spec.vocab_size,
        encoder,
        decoder,
        ctc,
        spec.sos,
        spec.eos,
        spec.ctc_weight,
        spec.reverse_weight,
        spec.lsm_weight,
        spec.length_normalized_loss,
    )


def read_train_yaml(path: Path) -> Dict[str, Any]:
    if not path.is_file():
        raise EdgeAsrError(f"{path}: train.yaml not found")
    try:
        configs = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise EdgeAsrError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(configs, dict):
        raise EdgeAsrError(f"{path}: expected a mapping at the top level")
    return configs


def _first_existing(*candidates: Optional[Path]) -> Optional[Path]:
    return next((p for p in candidates if p is not None and p.is_file()), None)


def _resolve_units(model_dir: Path, configs: Dict[str, Any]) -> Path:
    configured = symbol_table_setting(configs)
    path = _first_existing(model_dir / "units.txt", Path(configured) if configured else None)
    if path is None:
        raise EdgeAsrError(f"{model_dir}: no units.txt (nor tokenizer_conf.symbol_table_path={configured!r})")
    return path


def _resolve_cmvn(
    model_dir: Path, configs: Dict[str, Any], state: Dict[str, torch.Tensor]
) -> Tuple[Optional[Tuple[np.ndarray, np.ndarray]], str]:
    """(mean, istd) or None, and a sentence saying where it came from."""
    settings = cmvn_settings(configs)
    if settings is None:
        return None, "none (train.yaml has no global CMVN)"
    configured = Path(settings["cmvn_file"]) if settings["cmvn_file"] else None
    path = _first_existing(
        model_dir / "global_cmvn",
        model_dir / configured.name if configured else None,
        configured,
    )
    in_ckpt = all(k in state for k in _CMVN_KEYS)
    if in_ckpt:
        ckpt = (state[_CMVN_KEYS[0]].numpy(), state[_CMVN_KEYS[1]].numpy())
        if path is not None:
            from_file = load_cmvn(path, settings["is_json_cmvn"])
            if from_file[0].shape != ckpt[0].shape:
                raise EdgeAsrError(f"{path}: CMVN statistics have {from_file[0].shape[0]} dimensions, the checkpoint's "
                                   f"{_CMVN_KEYS[0]} has {ckpt[0].shape[0]} (final.pt; the features the model takes)")
            if not all(np.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(from_file, ckpt)):
                raise EdgeAsrError(f"{path}: CMVN statistics differ from the checkpoint's encoder.global_cmvn")
            return ckpt, f"checkpoint (agrees with {path})"
        return ckpt, "checkpoint"
    if path is None:
        raise EdgeAsrError(
            f"{model_dir}: train.yaml asks for global CMVN but there is no global_cmvn file "
            f"(nor {configured}) and final.pt has no encoder.global_cmvn.*"
        )
    return load_cmvn(path, settings["is_json_cmvn"]), str(path)


def load_state_dict(path: Path) -> Dict[str, torch.Tensor]:
    if not path.is_file():
        raise EdgeAsrError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise EdgeAsrError(f"{path}: cannot load as a weights-only state_dict ({type(exc).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EdgeAsrError(f"{path}: expected a plain state_dict of tensors")
    return state


def _check_keys(model: torch.nn.Module, state: Dict[str, torch.Tensor], path: Path) -> None:
    expected = set(model.state_dict())
    got = set(state)
    # BatchNorm's counter is optional in old checkpoints and never used at inference.
    missing = sorted(k for k in expected - got if not k.endswith("num_batches_tracked"))
    unexpected = sorted(got - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)}: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
        if unexpected:
            parts.append(
                f"unexpected {len(unexpected)}: {', '.join(unexpected[:8])}{' ...' if len(unexpected) > 8 else ''}"
            )
        raise EdgeAsrError(f"{path}: state_dict does not match train.yaml ({'; '.join(parts)})")
    shapes = [k for k in expected & got if model.state_dict()[k].shape != state[k].shape]
    if shapes:
        k = sorted(shapes)[0]
        raise EdgeAsrError(
            f"{path}: {k} has shape {tuple(state[k].shape)}, train.yaml implies {tuple(model.state_dict()[k].shape)}"
        )


def accept_position_tables(
    model: torch.nn.Module, state: Dict[str, torch.Tensor], path: Path
) -> Dict[str, torch.Tensor]:
    """`state` without the sinusoid tables that current WeNet saves, once each is checked.

    WeNet registers `pe` of its positional encodings as a persistent buffer (checkpoints saved since
    then carry `encoder.embed.pos_enc.pe`, `decoder.left_decoder.embed.1.pe`, ...; older ones do
    not). Ours is computed, never loaded, so a saved table is accepted only where the model has a
    positional encoding and only when it equals the computed one (a different max_len or d is a
    shape error, different values an error naming the largest difference)."""
    tables = {f"{name}.pe": m.pe for name, m in model.named_modules() if isinstance(m, PositionalEncoding)}
    kept = {}
    for key, value in state.items():
        if key not in tables:
            kept[key] = value
            continue
        expected = tables[key]
        if tuple(value.shape) != tuple(expected.shape):
            raise EdgeAsrError(
                f"{path}: {key} has shape {tuple(value.shape)}, the sinusoid table is {tuple(expected.shape)}"
            )
        diff = float((value.float() - expected).abs().max())
        if not diff <= _POSITION_TABLE_ATOL:
            raise EdgeAsrError(
                f"{path}: {key} is not the sinusoid table the model computes (max |diff| {diff:.3g})"
            )
    return kept


def load_model(model_dir: str | Path) -> LoadedModel:
    """Load a WeNet model directory; the model is in eval mode, `model.provenance` says which files fed it."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise EdgeAsrError(f"{model_dir}: model directory not found")
    configs = read_train_yaml(model_dir / "train.yaml")
    units_path = _resolve_units(model_dir, configs)
    symbols = read_symbol_table(units_path)
    spec = ModelSpec(configs, len(symbols))  # ctc_conf.ctc_blank_id is 0 (validated there)
    if symbols.get("<blank>") != 0:
        found = next((t for t, i in symbols.items() if i == 0), None)
        raise EdgeAsrError(f"{units_path}: id 0 must be '<blank>' (ctc_conf.ctc_blank_id = 0), got {found!r}")
    ckpt_path = model_dir / "final.pt"
    state = load_state_dict(ckpt_path)
    cmvn, cmvn_source = _resolve_cmvn(model_dir, configs, state)
    if cmvn is not None and any(len(stat) != spec.input_dim for stat in cmvn):
        raise EdgeAsrError(f"{cmvn_source}: CMVN statistics have {len(cmvn[0])} dimensions, "
                           f"train.yaml's input_dim is {spec.input_dim}")
    model = build_model(spec, cmvn)
    state = accept_position_tables(model, state, ckpt_path)
    if cmvn is not None and not all(k in state for k in _CMVN_KEYS):
        state = {**state, **{k: v for k, v in model.state_dict().items() if k in _CMVN_KEYS}}
    _check_keys(model, state, ckpt_path)
    model.load_state_dict(state, strict=False)  # strictness enforced above, num_batches_tracked optional
    model.eval()
    model.provenance = {"units": str(units_path), "cmvn": cmvn_source, "checkpoint": str(ckpt_path)}
    log.info("loaded %s: units from %s, CMVN from %s", model_dir, units_path, cmvn_source)
    return LoadedModel(model, configs, symbols)
