"""Other formats, read and written: Hugging Face model folders (loading), GGUF files (gguf),
PEFT adapters (peft), and the export folder (export) that sentence-transformers (st_module),
mteb (mteb) and the official llm2vec read."""
