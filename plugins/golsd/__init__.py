"""GO-LSD + FDR (D-FINE) for DETR detectors.

``plugins.golsd.functional`` holds the maths on plain tensors; the mmdet
modules (decoder, head, detector) register when mmdet is imported.

Paper: Peng et al., "D-FINE: Redefine Regression Task in DETRs as Fine-grained
Distribution Refinement", ICLR 2025, arXiv:2410.13842. "The reference" in this
package means the authors' implementation, github.com/Peterande/D-FINE; where
the plugin follows or departs from it, docs/golsd.md lists it point by point.
"""

#: host module -> this package's adapter modules, imported once the host is imported
HOST_ADAPTERS = {'mmdet.models': ['plugins.golsd.mmdet']}

__all__ = ['HOST_ADAPTERS']
