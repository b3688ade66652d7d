"""The data flow's first stage: read a dataset (ExpW label.lst or class folders), decode and crop its
faces into the face cache, split them, balance the training split, or generate the ExpW-layout sample.

The names below are the package's public API, each imported from its module on first use
(:mod:`ferreport.lazy`).
"""

from __future__ import annotations

from ferreport.lazy import lazy_exports

#: Public name -> the module of this package that defines it.
EXPORTS: dict[str, str] = {
    "balance_training_set": "balancing",
    "BalanceResult": "balancing",
    "canonical_class": "classes",
    "check_dataset_root": "loading",
    "crop_face": "crop",
    "data_summary": "prepare_stage",
    "decode_image": "decode",
    "format_summary": "prepare_stage",
    "generate_sample": "sample.generate",
    "LabelIndex": "index_table",
    "load_dataset": "loading",
    "parse_classes": "classes",
    "prepare": "prepare_stage",
    "prepare_dataset": "face_cache",
    "PreparedDataset": "face_cache",
    "PreparedSplit": "prepare_stage",
    "read_class_folders": "class_folders",
    "read_label_file": "expw",
    "resolve_dataset": "prepare_stage",
    "SampleSpec": "sample.plan",
    "split_faces": "splitting",
    "split_table": "splitting",
}
__all__ = sorted(EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
