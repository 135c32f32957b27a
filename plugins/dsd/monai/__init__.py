"""MONAI (ignite) adapters of DSD."""
from .handlers import DSDTermsHandler

__all__ = ['DSDTermsHandler']
