"""Stage 4: downstream tasks (ITR, TIR, CR, SUB, FC) with the paper's protocols and metrics."""
