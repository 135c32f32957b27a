"""GO-LSD + FDR (D-FINE) for DETR detectors.

``plugins.golsd.functional`` holds the maths on plain tensors; the mmdet
modules (decoder, head, detector) register when mmdet is imported.
"""
