"""The Kaleido-BERT model (registered ``kaleido``) and its tokenizer."""
