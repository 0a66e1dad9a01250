"""Exports of a patient's timeline for use outside the service (spreadsheets, FHIR)."""
