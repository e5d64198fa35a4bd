"""Checkpoints, one home per kind: reading any PyTorch file safely (``files``), the official layouts of FairNAS,
SCARLET and timm renamed and loaded strictly (``official``), nasdeploy's own network checkpoints (``network``), and
the training state a killed run resumes from (``resume``). Supernet checkpoints live beside the supernet they build
(``nasdeploy.nas.supernet_checkpoint``)."""
