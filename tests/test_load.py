"""load_model: both train.yaml layouts, CMVN sources, strict keys, weights-only loading, clear errors."""

import json
import pickle

import numpy as np
import pytest
import torch
import yaml

from conftest import VOCAB, cmvn_json, train_yaml, write_model_dir
from edgeasr.errors import EdgeAsrError
from edgeasr.frontend.cmvn import load_cmvn
from edgeasr.model import load_model


def test_roundtrip_gives_identical_outputs(tmp_path, arch, feats):
    ref = write_model_dir(tmp_path, arch)
    model, config, symbols = load_model(tmp_path)
    assert not model.training
    assert len(symbols) == VOCAB and symbols["<blank>"] == 0
    assert config["encoder"] == train_yaml(arch)["encoder"]
    lens = torch.tensor([feats.size(1)])
    with torch.no_grad():
        a, _ = ref.encoder(feats, lens, 4, 2)
        b, _ = model.encoder(feats, lens, 4, 2)
    assert torch.equal(a, b)
    assert "agrees with" in model.provenance["cmvn"]
    assert model.provenance["units"].endswith("units.txt")


def test_legacy_layout(tmp_path, feats):
    ref = write_model_dir(tmp_path, "conformer_nopos_conv2d8_relu_causal_bn")
    conf = train_yaml("conformer_nopos_conv2d8_relu_causal_bn")
    for key in ("cmvn", "cmvn_conf", "tokenizer", "tokenizer_conf"):
        conf.pop(key)
    conf.update(cmvn_file="/old/recipe/global_cmvn", is_json_cmvn=True)
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(conf))
    model, _, _ = load_model(tmp_path)
    assert model.sos == model.eos == VOCAB - 1
    with torch.no_grad():
        assert torch.equal(ref.encoder(feats, torch.tensor([173]), -1)[0], model.encoder(feats, torch.tensor([173]), -1)[0])


def test_cmvn_from_checkpoint_when_no_file(tmp_path):
    write_model_dir(tmp_path, "transformer_abspos_conv2d6", with_cmvn_file=False)
    model, _, _ = load_model(tmp_path)
    assert model.provenance["cmvn"] == "checkpoint"


def test_cmvn_from_file_when_checkpoint_lacks_it(tmp_path):
    ref = write_model_dir(tmp_path, "transformer_abspos_conv2d6")
    state = torch.load(tmp_path / "final.pt", weights_only=True)
    for k in ("encoder.global_cmvn.mean", "encoder.global_cmvn.istd"):
        state.pop(k)
    torch.save(state, tmp_path / "final.pt")
    model, _, _ = load_model(tmp_path)
    assert model.provenance["cmvn"].endswith("global_cmvn")
    assert torch.allclose(model.encoder.global_cmvn.istd, ref.encoder.global_cmvn.istd)


def test_cmvn_file_disagreeing_with_checkpoint_is_an_error(tmp_path):
    write_model_dir(tmp_path, "transformer_abspos_conv2d6")
    (tmp_path / "global_cmvn").write_text(json.dumps(cmvn_json(20, seed=99)))
    with pytest.raises(EdgeAsrError, match="differ from the checkpoint"):
        load_model(tmp_path)


def test_kaldi_text_cmvn_equals_json(tmp_path):
    stats = cmvn_json(5)
    (tmp_path / "cmvn.json").write_text(json.dumps(stats))
    body = " ".join(map(str, stats["mean_stat"])) + f" {stats['frame_num']}\n" + " ".join(map(str, stats["var_stat"]))
    (tmp_path / "cmvn.ark").write_text(f" [\n {body} 0 ]\n")
    for a, b in zip(load_cmvn(tmp_path / "cmvn.json"), load_cmvn(tmp_path / "cmvn.ark")):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    mean, istd = load_cmvn(tmp_path / "cmvn.json", True)
    expected_mean = np.asarray(stats["mean_stat"]) / stats["frame_num"]
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-6)
    var = np.asarray(stats["var_stat"]) / stats["frame_num"] - expected_mean**2
    np.testing.assert_allclose(istd, 1 / np.sqrt(var), rtol=1e-5)


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    write_model_dir(tmp_path, "conformer_relpos_conv2d_swish_ln")
    state = torch.load(tmp_path / "final.pt", weights_only=True)
    state.pop("ctc.ctc_lo.bias")
    state["encoder.extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "final.pt")
    with pytest.raises(EdgeAsrError, match=r"missing 1: ctc\.ctc_lo\.bias; unexpected 1: encoder\.extra\.weight"):
        load_model(tmp_path)


def test_checkpoint_with_code_is_refused(tmp_path):
    write_model_dir(tmp_path, "transformer_abspos_conv2d6")

    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    (tmp_path / "final.pt").write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(EdgeAsrError, match="weights-only"):
        load_model(tmp_path)


@pytest.mark.parametrize(
    "section,key,value,message",
    [
        ("encoder_conf", "input_layer", "conv2d2", r"encoder_conf\.input_layer: unsupported value 'conv2d2' \(supported: 'conv2d' \| 'conv2d6' \| 'conv2d8'\)"),
        ("encoder_conf", "cnn_module_norm", "rms", r"encoder_conf\.cnn_module_norm: unsupported value"),
        ("encoder_conf", "flash", True, r"encoder_conf\.flash: unsupported key"),
        ("decoder_conf", "concat_after", True, r"decoder_conf\.concat_after: unsupported value True"),
        (None, "encoder", "squeezeformer", r"encoder: unsupported value 'squeezeformer'"),
        (None, "decoder", "rnn", r"decoder: unsupported value 'rnn'"),
    ],
)
def test_unsupported_values_name_the_key(tmp_path, section, key, value, message):
    write_model_dir(tmp_path, "conformer_relpos_conv2d_swish_ln")
    conf = train_yaml("conformer_relpos_conv2d_swish_ln")
    (conf[section] if section else conf)[key] = value
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(conf))
    with pytest.raises(EdgeAsrError, match=message):
        load_model(tmp_path)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(EdgeAsrError, match="model directory not found"):
        load_model(tmp_path / "nope")
    write_model_dir(tmp_path, "transformer_abspos_conv2d6")
    (tmp_path / "units.txt").unlink()
    with pytest.raises(EdgeAsrError, match="no units.txt"):
        load_model(tmp_path)


def wenet_sinusoid(max_len: int, d_model: int) -> torch.Tensor:
    """The table as current WeNet builds its persistent `pe` buffer (written out here, independently
    of edgeasr's embedding module): (1, max_len, d_model)."""
    pe = torch.zeros(max_len, d_model)
    position = torch.arange(0, max_len, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * -(np.log(10000.0) / d_model))
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe.unsqueeze(0)


# The `pe` keys a current WeNet checkpoint of each test architecture carries (no_pos has none).
WENET_PE_KEYS = {
    "conformer_relpos_conv2d_swish_ln": ["encoder.embed.pos_enc.pe", "decoder.left_decoder.embed.1.pe",
                                         "decoder.right_decoder.embed.1.pe"],
    "conformer_nopos_conv2d8_relu_causal_bn": ["decoder.left_decoder.embed.1.pe", "decoder.right_decoder.embed.1.pe"],
    "conformer_relpos_noncausal_k15": ["encoder.embed.pos_enc.pe", "decoder.left_decoder.embed.1.pe",
                                       "decoder.right_decoder.embed.1.pe"],
    "transformer_abspos_conv2d6": ["encoder.embed.pos_enc.pe", "decoder.left_decoder.embed.1.pe",
                                   "decoder.right_decoder.embed.1.pe"],
    "conformer_moe_conv2d8": ["encoder.embed.pos_enc.pe", "decoder.embed.1.pe"],
}


def add_wenet_pe(path, arch, table=wenet_sinusoid):
    state = torch.load(path / "final.pt", weights_only=True)
    for key in WENET_PE_KEYS[arch]:
        state[key] = table(5000, 16)
    torch.save(state, path / "final.pt")


def test_current_wenet_checkpoint_with_pe_buffers_loads(tmp_path, arch, feats):
    ref = write_model_dir(tmp_path, arch)
    add_wenet_pe(tmp_path, arch)
    model, _, _ = load_model(tmp_path)
    lens = torch.tensor([feats.size(1)])
    with torch.no_grad():
        assert torch.equal(ref.encoder(feats, lens, 4, 2)[0], model.encoder(feats, lens, 4, 2)[0])


def test_wrong_pe_buffer_is_an_error_naming_key_and_difference(tmp_path):
    arch = "transformer_abspos_conv2d6"
    write_model_dir(tmp_path, arch)

    def shifted(max_len, d):
        return wenet_sinusoid(max_len + 1, d)[:, 1:]  # positions off by one

    add_wenet_pe(tmp_path, arch, shifted)
    with pytest.raises(EdgeAsrError, match=r"encoder\.embed\.pos_enc\.pe is not the sinusoid table .*max \|diff\| 0\.\d"):
        load_model(tmp_path)


def test_pe_buffer_of_another_length_is_a_shape_error(tmp_path):
    arch = "transformer_abspos_conv2d6"
    write_model_dir(tmp_path, arch)
    add_wenet_pe(tmp_path, arch, lambda n, d: wenet_sinusoid(4000, d))
    with pytest.raises(EdgeAsrError, match=r"pe has shape \(1, 4000, 16\)"):
        load_model(tmp_path)


def test_pe_key_where_the_model_has_no_positional_encoding_is_unexpected(tmp_path):
    write_model_dir(tmp_path, "conformer_nopos_conv2d8_relu_causal_bn")
    state = torch.load(tmp_path / "final.pt", weights_only=True)
    state["encoder.embed.pos_enc.pe"] = wenet_sinusoid(5000, 16)
    torch.save(state, tmp_path / "final.pt")
    with pytest.raises(EdgeAsrError, match=r"unexpected 1: encoder\.embed\.pos_enc\.pe"):
        load_model(tmp_path)


def test_units_whose_blank_is_renamed_is_refused(tmp_path):
    write_model_dir(tmp_path, "conformer_nopos_conv2d8_relu_causal_bn")
    units = (tmp_path / "units.txt").read_text(encoding="utf-8").replace("<blank> 0", "<pad> 0")
    (tmp_path / "units.txt").write_text(units, encoding="utf-8")
    with pytest.raises(EdgeAsrError, match=r"units\.txt: id 0 must be '<blank>' .*got '<pad>'"):
        load_model(tmp_path)


def test_units_with_a_repeated_token_names_the_lines(tmp_path):
    write_model_dir(tmp_path, "conformer_nopos_conv2d8_relu_causal_bn")
    lines = (tmp_path / "units.txt").read_text(encoding="utf-8").splitlines()
    lines[3] = lines[2].split()[0] + " 3"  # the token of line 3 again, with line 4's id
    (tmp_path / "units.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(EdgeAsrError, match=r"units\.txt:4: token '.' repeats line 3"):
        load_model(tmp_path)


def test_cmvn_of_another_dimension_names_the_file(tmp_path):
    write_model_dir(tmp_path, "transformer_abspos_conv2d6")  # input_dim 20
    state = torch.load(tmp_path / "final.pt", weights_only=True)
    for k in ("encoder.global_cmvn.mean", "encoder.global_cmvn.istd"):
        state.pop(k)
    torch.save(state, tmp_path / "final.pt")
    (tmp_path / "global_cmvn").write_text(json.dumps(cmvn_json(40)))
    with pytest.raises(EdgeAsrError, match=r"global_cmvn: CMVN statistics have 40 dimensions, .*input_dim is 20"):
        load_model(tmp_path)


def test_cmvn_file_of_another_dimension_than_the_checkpoint_is_one_line(tmp_path):
    """A 40-dimension global_cmvn beside a checkpoint whose encoder.global_cmvn has 20: the file, both
    dimensions and where the other comes from (it was numpy's broadcast error)."""
    write_model_dir(tmp_path, "transformer_abspos_conv2d6")  # input_dim 20, CMVN in final.pt too
    (tmp_path / "global_cmvn").write_text(json.dumps(cmvn_json(40)))
    with pytest.raises(EdgeAsrError, match=r"global_cmvn: CMVN statistics have 40 dimensions, the checkpoint's "
                                           r"encoder.global_cmvn.mean has 20 \(final.pt"):
        load_model(tmp_path)
