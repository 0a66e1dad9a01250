"""Measuring a segmentation: volumes, lesions and RANO diameters, lesion tracking across
visits, evaluation metrics, display images."""
