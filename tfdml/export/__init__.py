"""Export to SavedModel for retrieval serving."""

from tfdml.export.saved_model import export_saved_model

__all__ = ["export_saved_model"]
