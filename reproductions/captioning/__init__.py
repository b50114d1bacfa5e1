"""The captioning wing: what every captioning paper shares (its task object, the LSTM caption decoder that each
paper plugs its context block into, the LightningModule, the image encoders, pycocoevalcap's metrics, the data).
Paper folders import it; it imports only the core, `reproductions.common`."""
