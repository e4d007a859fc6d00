"""CTC head: a Linear to the vocabulary (`ctc.ctc_lo`), log-softmax for decoding, CTC loss for training."""

import torch


class CTC(torch.nn.Module):
    def __init__(self, odim: int, encoder_output_size: int, blank_id: int = 0):
        super().__init__()
        self.ctc_lo = torch.nn.Linear(encoder_output_size, odim)
        self.ctc_loss = torch.nn.CTCLoss(blank=blank_id, reduction="sum", zero_infinity=True)

    def log_softmax(self, hs_pad: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, V) log-probabilities."""
        return torch.nn.functional.log_softmax(self.ctc_lo(hs_pad), dim=2)

    def forward(
        self, hs_pad: torch.Tensor, hlens: torch.Tensor, ys_pad: torch.Tensor, ys_lens: torch.Tensor
    ) -> torch.Tensor:
        """Summed CTC loss divided by batch size (WeNet's reduction); float32 even under bf16 autocast."""
        log_probs = torch.nn.functional.log_softmax(self.ctc_lo(hs_pad).float(), dim=2).transpose(0, 1)  # (T, B, V)
        loss = self.ctc_loss(log_probs, ys_pad, hlens, ys_lens)
        return loss / hs_pad.size(0)
