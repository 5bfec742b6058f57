"""PyTorch-side compression: structured pruning, knowledge distillation, quantization,
and the accuracy-gated search that chains them (``search.py``).

Each technique is one module with a typed config (``recipe.py``) and a handler
registered for that config type (``techniques.py``). Nothing here imports
``export``: the search measures candidates through a callback the build passes in.
"""
