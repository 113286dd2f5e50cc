"""The paper's published Fashion-Gen figures (SPEC section 8, Tables 2 and 3), copied as printed.

They are only ever shown in their own labelled columns of the report, never mixed with ours.
``None`` marks a cell the paper leaves empty ("-").
"""

from __future__ import annotations

# Table 2: retrieval (%), one column per model.
TABLE2_MODELS: tuple[str, ...] = ("VSE", "VSE++", "SCAN", "PFAN", "ViLBERT", "VL-BERT", "FashionBERT",
                                  "ImageBERT", "OSCAR", "Kaleido-BERT")
TABLE2: dict[str, tuple[float, ...]] = {
    "ITR R@1": (4.01, 4.59, 4.59, 4.29, 20.97, 19.26, 23.96, 22.76, 23.39, 27.99),
    "ITR R@5": (11.03, 14.99, 16.50, 14.90, 40.49, 39.90, 46.31, 41.89, 44.67, 60.09),
    "ITR R@10": (22.14, 24.10, 26.60, 24.20, 48.21, 46.05, 52.12, 50.77, 52.55, 68.37),
    "TIR R@1": (4.35, 4.60, 4.30, 6.20, 21.12, 22.63, 26.75, 24.78, 25.10, 33.88),
    "TIR R@5": (12.76, 16.89, 13.00, 20.79, 37.23, 36.48, 46.48, 45.20, 49.14, 60.60),
    "TIR R@10": (20.91, 28.99, 22.30, 31.52, 50.11, 48.52, 55.74, 55.90, 56.68, 68.59),
    "SumR": (75.20, 94.16, 87.29, 101.90, 218.13, 212.84, 251.36, 241.30, 251.53, 319.52),
}

# Table 3: category recognition (ACC %, macro-F in [0, 1]) and captioning (x100).
TABLE3_MODELS: tuple[str, ...] = ("FashionBERT", "ImageBERT", "OSCAR", "Kaleido-BERT")
TABLE3: dict[str, tuple[float | None, ...]] = {
    "CR ACC": (91.25, 90.77, 91.79, 95.07),
    "CR macro-F": (0.705, 0.699, 0.727, 0.714),
    "SUB ACC": (85.27, None, 84.23, 88.07),
    "SUB macro-F": (0.620, None, 0.591, 0.636),
    "SumCLS": (309.02, 298.28, 307.82, 318.14),
    "FC BLEU-4": (3.30, None, 4.50, 5.70),
    "FC METEOR": (9.80, None, 10.9, 12.8),
    "FC ROUGE-L": (29.7, None, 30.1, 32.9),
    "FC CIDEr": (30.1, None, 30.7, 32.6),
    "SumCAP": (72.9, None, 76.2, 84.0),
}
