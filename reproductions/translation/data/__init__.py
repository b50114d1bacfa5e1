"""Parallel text: which files a split is, the training corpus, the token cache and the LightningDataModule."""
