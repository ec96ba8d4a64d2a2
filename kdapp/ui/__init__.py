"""The page's pieces that are not widgets: figures (plots) and text (reports)."""
