"""Export to SavedModel for retrieval serving: an embedding model, or one that searches a gallery.

Example (not run as a doctest: it needs a trained model and writes into runs/):
    >>> from tfdml.export import export_retrieval_model, export_saved_model, load_exported  # doctest: +SKIP
    >>> export_saved_model(model, "runs/emoji/saved_model", image_size=32)  # doctest: +SKIP
    >>> export_retrieval_model(model, test_table, "runs/emoji/retrieval_model", image_size=32)  # doctest: +SKIP
    >>> load_exported("runs/emoji/retrieval_model").kind  # doctest: +SKIP
    'retrieval'
"""

from tfdml.export.retrieval import embed_table, export_retrieval_model, read_image_folder
from tfdml.export.saved_model import (KIND_EMBEDDING, KIND_RETRIEVAL, MANIFEST, ExportedModel, export_saved_model,
                                      load_exported)

__all__ = ["KIND_EMBEDDING", "KIND_RETRIEVAL", "MANIFEST", "ExportedModel", "embed_table", "export_retrieval_model",
           "export_saved_model", "load_exported", "read_image_folder"]
