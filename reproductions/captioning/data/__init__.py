"""Images and their captions: the splits (Flickr8k, Karpathy's JSON) and the LightningDataModule."""
