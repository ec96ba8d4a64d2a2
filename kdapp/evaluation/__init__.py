"""Evaluation: reading a drawing, fidelity to the teacher, robustness to other writers, export."""
