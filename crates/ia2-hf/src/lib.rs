//! Hugging Face model directories: resolution (local or cache), config.json, safetensors, tokenizer.
