"""The hybrid CTC/attention model: `encoder`, `ctc`, optional `decoder`, with WeNet's training loss."""

from typing import Dict, List, Optional, Tuple

import torch

IGNORE_ID = -1


def pad_list(xs: List[torch.Tensor], pad_value: float) -> torch.Tensor:
    """List of (L_i,) -> (B, max L_i) padded with pad_value."""
    return torch.nn.utils.rnn.pad_sequence(xs, batch_first=True, padding_value=pad_value)


def add_sos_eos(ys_pad: torch.Tensor, sos: int, eos: int, ignore_id: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(B, L) padded with ignore_id -> decoder input [sos]+y (pad eos), target y+[eos] (pad ignore_id)."""
    ys = [y[y != ignore_id] for y in ys_pad]
    sos_t = torch.tensor([sos], dtype=torch.long, device=ys_pad.device)
    eos_t = torch.tensor([eos], dtype=torch.long, device=ys_pad.device)
    ys_in = [torch.cat([sos_t, y]) for y in ys]
    ys_out = [torch.cat([y, eos_t]) for y in ys]
    return pad_list(ys_in, eos), pad_list(ys_out, ignore_id)


def reverse_pad_list(ys_pad: torch.Tensor, ys_lens: torch.Tensor, pad_value: float) -> torch.Tensor:
    """Reverse the valid part of each row: (B, L) -> (B, L), padded with pad_value."""
    return pad_list([torch.flip(y[: int(n)], [0]) for y, n in zip(ys_pad, ys_lens)], pad_value)


class LabelSmoothingLoss(torch.nn.Module):
    """KL(smoothed one-hot || softmax(logits)), summed and divided by batch size (or token count)."""

    def __init__(self, size: int, smoothing: float, normalize_length: bool = False):
        super().__init__()
        self.size = size
        self.smoothing = smoothing
        self.normalize_length = normalize_length

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        batch = logits.size(0)
        logits = logits.reshape(-1, self.size)
        target = target.reshape(-1)
        ignore = target == IGNORE_ID
        true_dist = torch.full_like(logits, self.smoothing / (self.size - 1), dtype=torch.float32)
        true_dist.scatter_(1, target.masked_fill(ignore, 0).unsqueeze(1), 1.0 - self.smoothing)
        kl = torch.nn.functional.kl_div(torch.log_softmax(logits.float(), dim=1), true_dist, reduction="none")
        total = kl.masked_fill(ignore.unsqueeze(1), 0.0).sum()
        denom = int((~ignore).sum()) if self.normalize_length else batch
        return total / denom


class ASRModel(torch.nn.Module):
    """encoder -> ctc (+ attention decoder for rescoring)."""

    def __init__(
        self,
        vocab_size: int,
        encoder: torch.nn.Module,
        decoder: Optional[torch.nn.Module],
        ctc: torch.nn.Module,
        sos: int,
        eos: int,
        ctc_weight: float = 0.5,
        reverse_weight: float = 0.0,
        lsm_weight: float = 0.0,
        length_normalized_loss: bool = False,
    ):
        super().__init__()
        self.vocab_size = vocab_size
        self.encoder = encoder
        self.decoder = decoder
        self.ctc = ctc
        self.sos = sos
        self.eos = eos
        self.ctc_weight = ctc_weight
        self.reverse_weight = reverse_weight
        self.criterion_att = LabelSmoothingLoss(vocab_size, lsm_weight, length_normalized_loss)

    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        chunk_size: int = 0,
    ) -> Dict[str, torch.Tensor]:
        """Training loss: ctc_weight * CTC + (1 - ctc_weight) * attention (L2R/R2L mixed by reverse_weight).

        chunk_size: the encoder's attention chunk for this batch (-1 full context, 0 = the encoder's
        own random choice, as WeNet trains)."""
        encoder_out, encoder_mask = self.encoder(speech, speech_lengths, chunk_size)
        encoder_out_lens = encoder_mask.squeeze(1).sum(1)
        loss_ctc = self.ctc(encoder_out, encoder_out_lens, text, text_lengths)
        if self.decoder is None or self.ctc_weight >= 1.0:
            return {"loss": loss_ctc, "loss_ctc": loss_ctc}
        loss_att = self.attention_loss(encoder_out, encoder_mask, text, text_lengths)
        loss = self.ctc_weight * loss_ctc + (1 - self.ctc_weight) * loss_att
        return {"loss": loss, "loss_ctc": loss_ctc, "loss_att": loss_att}

    def attention_loss(
        self, encoder_out: torch.Tensor, encoder_mask: torch.Tensor, ys_pad: torch.Tensor, ys_lens: torch.Tensor
    ) -> torch.Tensor:
        ys_in_pad, ys_out_pad = add_sos_eos(ys_pad, self.sos, self.eos, IGNORE_ID)
        r_ys_pad = reverse_pad_list(ys_pad, ys_lens, float(IGNORE_ID))
        r_ys_in_pad, r_ys_out_pad = add_sos_eos(r_ys_pad, self.sos, self.eos, IGNORE_ID)
        decoder_out, r_decoder_out, _ = self.decoder(
            encoder_out, encoder_mask, ys_in_pad, ys_lens + 1, r_ys_in_pad, self.reverse_weight
        )
        loss = self.criterion_att(decoder_out, ys_out_pad)
        if self.reverse_weight > 0.0:
            r_loss = self.criterion_att(r_decoder_out, r_ys_out_pad)
            loss = loss * (1 - self.reverse_weight) + r_loss * self.reverse_weight
        return loss
