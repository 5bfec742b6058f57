"""The worked example: scikit-learn's bundled digits (real data, no download)."""
