"""Stage 2, the Attention-based Alignment Generator: rough ``<token, patch>`` alignments.

``none`` gives no alignments; ``sat`` trains a Show-Attend-Tell captioner and aligns the words it
generates that also occur in the description to the Kaleido patch its attention points at.
Entry point: :func:`kaleido.aligners.align.align`; output: :class:`kaleido.aligners.store.AlignmentStore`.
"""
