"""Models: attention kernels, backbones (scGPT-style, ...), scHyena."""
