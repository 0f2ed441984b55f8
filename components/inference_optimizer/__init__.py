"""InferenceOptimizer: frozen GraphDef in, optimized GraphDef plus servable SavedModel out."""
