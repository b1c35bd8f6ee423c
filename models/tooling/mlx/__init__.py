"""MLX tooling: Hugging Face checkpoint -> MLX weights, and their parity check."""
