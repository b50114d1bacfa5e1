"""The translation wing: what every translation paper shares (its task object, the RNN encoder-decoder that the
RNN papers plug their context block into, the LightningModule, decoding, sacreBLEU and the papers' BLEU
conventions, the data). Paper folders import it; it imports only the core, `reproductions.common`."""
