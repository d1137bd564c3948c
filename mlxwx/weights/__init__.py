"""Model weights: one folder format for every model (`folder`), its readers for the formats
weights ship in (CTranslate2, torch zip, ONNX), the offline packs and the Hugging Face Hub."""

from .folder import cache_dir, cached, load_folder, save_folder

__all__ = ["cache_dir", "cached", "load_folder", "save_folder"]
