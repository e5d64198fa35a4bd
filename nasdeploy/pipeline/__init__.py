"""The end-to-end pipeline: its stages (``run``: supernet, latency tables, search, fine-tune, export, accuracy,
bench, deploy), its configuration (``config``), the typed result each stage hands on (``results``) and the final
report (``report``). It sits above everything else and nothing below imports it."""
from .config import BenchStage, DeployStage, ExportStage, LatencyStage, PipelineConfig, SearchStage
from .results import PipelineResults
from .run import Pipeline, run_pipeline

__all__ = ["BenchStage", "DeployStage", "ExportStage", "LatencyStage", "Pipeline", "PipelineConfig", "PipelineResults",
           "SearchStage", "run_pipeline"]
