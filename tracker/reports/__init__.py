"""A patient's timeline for use outside the service: CSV, FHIR R4, the tumour-board PDF."""
