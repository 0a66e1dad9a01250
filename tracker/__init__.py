"""The tracker service: patients, visits, analysis runs and assessments (Django app)."""
