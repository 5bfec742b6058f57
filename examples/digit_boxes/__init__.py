"""Object detection on canvases of scikit-learn's bundled digits (real data, no download)."""
