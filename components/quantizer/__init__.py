"""Quantizer: frozen GraphDef in; TFLite (fp16, dynamic-range, int8) or 8-bit-weights graphs out."""
