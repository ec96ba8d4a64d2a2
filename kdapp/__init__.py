"""kdapp: an interactive knowledge-distillation lab on MNIST."""
