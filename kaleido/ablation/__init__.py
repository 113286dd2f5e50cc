"""`kaleido ablate`: derive variant recipes from a base, run them all, compare them as in Table 4.

- :mod:`kaleido.ablation.variants`: what a variant is (``--set`` overrides of the base) and how
  the command-line values, the task shorthands (``B+I~V``) and the Table-4 column recipes become
  variants;
- :mod:`kaleido.ablation.table`: the scores of a run, mean and sd over seeds, the change
  relative to the base, written as markdown, JSON and a PNG chart;
- :mod:`kaleido.ablation.runner`: runs the base and every variant through the stage chain of
  `kaleido run` (so variants reuse every stage they share) and writes the comparison.
"""
