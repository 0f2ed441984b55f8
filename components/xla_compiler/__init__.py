"""XLA variants of a frozen graph: a jit_compile SavedModel and AOT machine code in a .so."""
