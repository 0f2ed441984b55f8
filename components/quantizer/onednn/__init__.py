"""Building blocks of the oneDNN int8 rewrite: graph editing, folding, calibration, kernels."""
