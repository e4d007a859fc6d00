"""The Horizon X3 (bernoulli2) path: contract check, exact 4-D rewrite, export, op placement."""

from .contract import check_contract, contract_violations
from .encoder import BpuCtc, BpuEncoder, rewrite
from .export import export_bpu
from .placement import placement_report, placement_summary

__all__ = ["BpuCtc", "BpuEncoder", "check_contract", "contract_violations", "export_bpu", "placement_report",
           "placement_summary", "rewrite"]
